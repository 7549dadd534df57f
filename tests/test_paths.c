/*
 * Path locks and the descriptor form against a real locksd: the client
 * opens the file and passes its descriptor, the daemon keys the lock by
 * the file (so a path and a name, or two paths to one file, share one
 * FIFO queue), excludes flock(1) on it, lists it under its path, refuses
 * what it cannot lock, and for the descriptor form leaves the flock on
 * the caller's own open file description.  And the wire rules for the
 * descriptors themselves.
 *
 * The TCase "paths" shares one daemon (h_srv); each test uses files of
 * its own under the daemon's directory.  Time bounds are generous.
 */

#include <sys/file.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include <errno.h>
#include <signal.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <check.h>

#include "harness.h"
#include "protocol.h"

/* A file of this test's own beside the daemon's socket. */
static void
test_path(char *buf, size_t size, const char *name)
{
	snprintf(buf, size, "%s/%s", h_srv.dir, name);
}

/* Whether a plain flock -n on path succeeds now, as flock(1) does it. */
static int
flock_free(const char *path)
{
	int	 fd, ok;

	if ((fd = open(path, O_RDONLY | O_CLOEXEC)) == -1)
		return -1;
	ok = flock(fd, LOCK_EX | LOCK_NB) == 0;
	close(fd);
	return ok;
}

/* The listed lock named name, or NULL; list is kept in *ret_list. */
static const locks_lock *
listed(locks_conn *c, const char *name, locks_list **ret_list)
{
	size_t	 i;

	ck_assert_int_eq(locks_list_get(c, NULL, ret_list), LOCKS_OK);
	for (i = 0; i < locks_list_count(*ret_list); i++) {
		if (strcmp(locks_lock_name(locks_list_lock(*ret_list, i)),
		    name) == 0)
			return locks_list_lock(*ret_list, i);
	}
	return NULL;
}

/* How many wait for the lock listed as name (-1: not listed). */
static int
nwaiters(locks_conn *c, const char *name)
{
	locks_list		*list = NULL;
	const locks_lock	*lock = listed(c, name, &list);
	int			 n = lock != NULL ?
				    (int)locks_lock_nwaiters(lock) : -1;

	locks_list_free(list);
	return n;
}

/* Wait until name has want waiters, within a generous bound. */
static void
wait_waiters(locks_conn *c, const char *name, int want)
{
	double	 until = h_now() + h_slow(5);

	while (nwaiters(c, name) != want && h_now() < until)
		h_sleep(0.02);
	ck_assert_int_eq(nwaiters(c, name), want);
}

/*
 * A child that acquires target (a path or name) and writes tag to fd
 * once granted, then holds until killed.  It closes drop first, as a
 * forked child keeps every open file description (and its flock).
 */
static pid_t
spawn_acquirer_closing(const char *target, char tag, int fd, int drop)
{
	locks_conn	*c;
	pid_t		 pid;

	if ((pid = fork()) != 0)
		return pid;
	if (drop >= 0)
		close(drop);
	if (locks_connect(h_srv.socket_path, "acquirer", &c) != LOCKS_OK ||
	    locks_acquire(c, target, NULL, NULL) != LOCKS_OK)
		_exit(1);
	if (write(fd, &tag, 1) != 1)
		_exit(1);
	pause();
	_exit(0);
}

static pid_t
spawn_acquirer(const char *target, char tag, int fd)
{
	return spawn_acquirer_closing(target, tag, fd, -1);
}

/* Read one tag from fd within a generous bound; 0 if none came. */
static char
read_tag(int fd)
{
	struct timeval	 tv = { (time_t)h_slow(5), 0 };
	fd_set		 set;
	char		 tag;

	FD_ZERO(&set);
	FD_SET(fd, &set);
	if (select(fd + 1, &set, NULL, NULL, &tv) != 1 ||
	    read(fd, &tag, 1) != 1)
		return 0;
	return tag;
}

static void
kill_child(pid_t pid)
{
	kill(pid, SIGKILL);
	waitpid(pid, NULL, 0);
}

START_TEST(test_path_lock_excludes_flock_and_is_listed_by_path)
{
	locks_conn		*c = h_lib_conn("pl-a"), *d = h_lib_conn("pl-b");
	locks_list		*list = NULL;
	const locks_lock	*lock;
	struct locks_acquire_opts opts = LOCKS_ACQUIRE_OPTS_INIT;
	char			 path[256];
	int64_t			 token = 0;

	test_path(path, sizeof path, "pl.lock");
	ck_assert_int_eq(locks_acquire(c, path, NULL, &token), LOCKS_OK);
	ck_assert_int_gt(token, 0);
	ck_assert_int_eq(flock_free(path), 0);
	ck_assert(locks_held(c, path));

	opts.timeout = 0;
	ck_assert_int_eq(locks_acquire(d, path, &opts, NULL), LOCKS_E_TIMEOUT);
	lock = listed(d, path, &list);
	ck_assert_ptr_nonnull(lock);
	ck_assert_int_eq(locks_lock_nholders(lock), 1);
	ck_assert_int_eq(locks_holder_token(locks_lock_holder(lock, 0)),
	    token);
	locks_list_free(list);

	ck_assert_int_eq(locks_list_get(d, path, &list), LOCKS_OK);
	ck_assert_int_eq(locks_list_count(list), 1);
	ck_assert_str_eq(locks_lock_name(locks_list_lock(list, 0)), path);
	locks_list_free(list);

	ck_assert_int_eq(locks_release(c, path), LOCKS_OK);
	ck_assert_int_eq(flock_free(path), 1);
	ck_assert_int_eq(locks_release(c, path), LOCKS_E_NOT_HELD);
	locks_close(c);
	locks_close(d);
}
END_TEST

/* The file a path names is created 0666 less umask, as flock(1) does. */
START_TEST(test_path_lock_creates_the_file_like_flock)
{
	locks_conn	*c = h_lib_conn("pl-create");
	char		 path[256], dir[256];
	struct stat	 sb;
	mode_t		 old = umask(022);

	test_path(path, sizeof path, "pl-created");
	unlink(path);
	ck_assert_int_eq(locks_acquire(c, path, NULL, NULL), LOCKS_OK);
	ck_assert_int_eq(stat(path, &sb), 0);
	ck_assert_int_eq(sb.st_mode & 0777, 0644);
	umask(old);

	/* A directory works too. */
	test_path(dir, sizeof dir, "pl-dir");
	ck_assert_int_eq(mkdir(dir, 0755), 0);
	ck_assert_int_eq(locks_acquire(c, dir, NULL, NULL), LOCKS_OK);
	ck_assert_int_eq(flock_free(dir), 0);

	/* A file that cannot be opened names itself. */
	ck_assert_int_eq(locks_acquire(c, "/nonexistent-dir/x", NULL, NULL),
	    LOCKS_E_OPEN);
	ck_assert_ptr_nonnull(strstr(locks_last_message(c),
	    "/nonexistent-dir/x"));
	locks_close(c);
}
END_TEST

/* A path into the lock dir and the name are one lock, FIFO together. */
START_TEST(test_path_and_name_share_one_fifo_queue)
{
	locks_conn	*c = h_lib_conn("pn-a");
	char		 path[256];
	int		 pipefd[2];
	pid_t		 b, d;

	snprintf(path, sizeof path, "%s/pn-shared", h_srv.lock_dir);
	ck_assert_int_eq(pipe(pipefd), 0);
	ck_assert_int_eq(locks_acquire(c, "pn-shared", NULL, NULL), LOCKS_OK);
	b = spawn_acquirer(path, 'B', pipefd[1]);
	wait_waiters(c, "pn-shared", 1);
	d = spawn_acquirer("pn-shared", 'D', pipefd[1]);
	wait_waiters(c, "pn-shared", 2);

	ck_assert_int_eq(locks_release(c, "pn-shared"), LOCKS_OK);
	ck_assert_int_eq(read_tag(pipefd[0]), 'B');
	ck_assert_int_eq(flock_free(path), 0);
	kill_child(b);
	ck_assert_int_eq(read_tag(pipefd[0]), 'D');
	kill_child(d);
	locks_close(c);
}
END_TEST

/* Hard links and symlinks to one file are one lock. */
START_TEST(test_two_paths_to_one_file_are_one_lock)
{
	locks_conn	*c = h_lib_conn("pp-a"), *d = h_lib_conn("pp-b");
	struct locks_acquire_opts opts = LOCKS_ACQUIRE_OPTS_INIT;
	char		 path[256], hard[256], soft[256];
	int		 fd;

	test_path(path, sizeof path, "pp-file");
	test_path(hard, sizeof hard, "pp-hard");
	test_path(soft, sizeof soft, "pp-soft");
	fd = open(path, O_RDONLY | O_CREAT | O_CLOEXEC, 0644);
	ck_assert_int_ge(fd, 0);
	close(fd);
	ck_assert_int_eq(link(path, hard), 0);
	ck_assert_int_eq(symlink(path, soft), 0);

	opts.timeout = 0;
	ck_assert_int_eq(locks_acquire(c, hard, NULL, NULL), LOCKS_OK);
	ck_assert_int_eq(locks_acquire(d, path, &opts, NULL), LOCKS_E_TIMEOUT);
	ck_assert_int_eq(locks_acquire(d, soft, &opts, NULL), LOCKS_E_TIMEOUT);
	/* The same connection asking by another path is asking again. */
	ck_assert_int_eq(locks_acquire(c, soft, &opts, NULL),
	    LOCKS_E_ALREADY_HELD);
	ck_assert_int_eq(locks_release(c, hard), LOCKS_OK);
	ck_assert_int_eq(locks_acquire(d, soft, &opts, NULL), LOCKS_OK);
	locks_close(c);
	locks_close(d);
}
END_TEST

/*
 * A path to the file a name lock had before the name was replaced is
 * that file's lock, not the name's: the grant is on the file it opened.
 */
START_TEST(test_path_to_a_replaced_lock_file_locks_that_file)
{
	locks_conn	*c = h_lib_conn("pz-a"), *d = h_lib_conn("pz-b");
	char		 name_path[256], hard[256], fresh[256];
	int		 fd, pipefd[2];
	pid_t		 pid;

	snprintf(name_path, sizeof name_path, "%s/pz-name", h_srv.lock_dir);
	test_path(hard, sizeof hard, "pz-hard");
	test_path(fresh, sizeof fresh, "pz-fresh");
	ck_assert_int_eq(locks_acquire(c, "pz-name", NULL, NULL), LOCKS_OK);
	ck_assert_int_eq(link(name_path, hard), 0);
	fd = open(fresh, O_RDONLY | O_CREAT | O_CLOEXEC, 0644);
	ck_assert_int_ge(fd, 0);
	close(fd);
	ck_assert_int_eq(rename(fresh, name_path), 0);

	ck_assert_int_eq(pipe(pipefd), 0);
	pid = spawn_acquirer(hard, 'H', pipefd[1]);
	h_sleep(0.2);
	ck_assert_int_eq(locks_release(c, "pz-name"), LOCKS_OK);
	ck_assert_int_eq(read_tag(pipefd[0]), 'H');
	/* The file it opened is the one locked. */
	ck_assert_int_eq(flock_free(hard), 0);
	kill_child(pid);
	locks_close(c);
	locks_close(d);
}
END_TEST

/* A path that is not UTF-8 is listed with '?' for its bad bytes. */
START_TEST(test_path_of_any_bytes_is_listed_as_utf8)
{
	locks_conn	*c = h_lib_conn("pu-a"), *d = h_lib_conn("pu-b");
	locks_list	*list = NULL;
	char		 path[256], shown[256];

	test_path(path, sizeof path, "bad-\xff.lock");
	test_path(shown, sizeof shown, "bad-?.lock");
	ck_assert_int_eq(locks_acquire(c, path, NULL, NULL), LOCKS_OK);
	ck_assert_ptr_nonnull(listed(d, shown, &list));
	locks_list_free(list);
	ck_assert_int_eq(locks_release(c, path), LOCKS_OK);
	locks_close(c);
	locks_close(d);
}
END_TEST

/* Only regular files and directories are locked; others are refused. */
START_TEST(test_path_refuses_what_it_cannot_lock)
{
	locks_conn	*c = h_lib_conn("pr-a");
	char		 fifo[256];
	int		 keep;

	test_path(fifo, sizeof fifo, "pr-fifo");
	ck_assert_int_eq(mkfifo(fifo, 0644), 0);
	/* Hold the other end, so the client's read-only open goes on. */
	keep = open(fifo, O_RDWR | O_NONBLOCK | O_CLOEXEC);
	ck_assert_int_ge(keep, 0);
	ck_assert_int_eq(locks_acquire(c, fifo, NULL, NULL),
	    LOCKS_E_UNSUPPORTED);
	ck_assert_ptr_nonnull(strstr(locks_last_message(c), "FIFO"));
	ck_assert_str_eq(locks_error_code(LOCKS_E_UNSUPPORTED), "unsupported");
	close(keep);
	locks_close(c);
}
END_TEST

/*
 * The descriptor form: once granted the flock is on the caller's own open
 * file description, so it outlives the connection and ends with it.
 */
START_TEST(test_descriptor_form_lives_as_long_as_the_descriptor)
{
	locks_conn		*c = h_lib_conn("df-a"), *d = h_lib_conn("df-b");
	locks_list		*list = NULL;
	const locks_lock	*lock;
	char			 path[256];
	int			 fd, pipefd[2];
	int64_t			 token = 0;
	pid_t			 waiter;

	test_path(path, sizeof path, "df.lock");
	fd = open(path, O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(locks_acquire_fd(c, fd, NULL, &token), LOCKS_OK);
	ck_assert_int_gt(token, 0);
	locks_close(c);
	ck_assert_int_eq(flock_free(path), 0);
	/* flock(2) on the same description is a no-op: it is ours. */
	ck_assert_int_eq(flock(fd, LOCK_EX | LOCK_NB), 0);

	lock = listed(d, path, &list);
	ck_assert_ptr_nonnull(lock);
	ck_assert_int_eq(locks_lock_nholders(lock), 1);
	ck_assert_int_eq(locks_holder_pid(locks_lock_holder(lock, 0)),
	    getpid());
	ck_assert_int_eq(locks_holder_token(locks_lock_holder(lock, 0)),
	    token);
	locks_list_free(list);

	/* A broker waiter gets it once the description is closed. */
	ck_assert_int_eq(pipe(pipefd), 0);
	waiter = spawn_acquirer_closing(path, 'W', pipefd[1], fd);
	wait_waiters(d, path, 1);
	close(fd);
	ck_assert_int_eq(read_tag(pipefd[0]), 'W');
	kill_child(waiter);
	locks_close(d);
}
END_TEST

/* The descriptor form waits its turn behind broker holders. */
START_TEST(test_descriptor_form_waits_in_fifo_order)
{
	locks_conn	*c = h_lib_conn("dq-a"), *d = h_lib_conn("dq-b");
	char		 path[256], tag;
	int		 pipefd[2], fd;
	pid_t		 pid;

	test_path(path, sizeof path, "dq.lock");
	ck_assert_int_eq(pipe(pipefd), 0);
	ck_assert_int_eq(locks_acquire(c, path, NULL, NULL), LOCKS_OK);
	if ((pid = fork()) == 0) {
		locks_conn	*e;

		fd = open(path, O_RDONLY | O_CLOEXEC);
		if (fd == -1 || locks_connect(h_srv.socket_path, "dq-c",
		    &e) != LOCKS_OK || locks_acquire_fd(e, fd, NULL,
		    NULL) != LOCKS_OK)
			_exit(1);
		locks_close(e);
		tag = flock(fd, LOCK_EX | LOCK_NB) == 0 ? 'F' : 'x';
		if (write(pipefd[1], &tag, 1) != 1)
			_exit(1);
		pause();
		_exit(0);
	}
	wait_waiters(d, path, 1);
	ck_assert_int_eq(locks_release(c, path), LOCKS_OK);
	ck_assert_int_eq(read_tag(pipefd[0]), 'F');
	ck_assert_int_eq(flock_free(path), 0);
	kill_child(pid);
	ck_assert_int_eq(flock_free(path), 1);
	locks_close(c);
	locks_close(d);
}
END_TEST

/* A child that waits in flock(2) for path, outside the broker, then lets go. */
static pid_t
spawn_outside_waiter(const char *path)
{
	pid_t	 pid;
	int	 fd;

	if ((pid = fork()) == 0) {
		fd = open(path, O_RDONLY | O_CLOEXEC);
		_exit(fd == -1 || flock(fd, LOCK_EX) == -1 ? 1 : 0);
	}
	ck_assert_int_gt(pid, 0);
	return pid;
}

/*
 * An exclusive descriptor-form grant unlocks the broker's copy and locks
 * the caller's, and a flock(2) waiting outside may win that instant:
 * the caller then waits again, as flock(1) would, and never sees an
 * error for a wait without a timeout.  A race, so it is run many times.
 */
START_TEST(test_descriptor_form_outlasts_an_outside_waiter)
{
	locks_conn	*c = h_lib_conn("dw-a");
	char		 path[256];
	int		 i, status, fd;
	pid_t		 waiter, outsider;

	test_path(path, sizeof path, "dw.lock");
	for (i = 0; i < 20; i++) {
		ck_assert_int_eq(locks_acquire(c, path, NULL, NULL), LOCKS_OK);
		if ((waiter = fork()) == 0) {
			locks_conn	*e;

			fd = open(path, O_RDONLY | O_CLOEXEC);
			_exit(fd == -1 || locks_connect(h_srv.socket_path,
			    "dw-b", &e) != LOCKS_OK || locks_acquire_fd(e, fd,
			    NULL, NULL) != LOCKS_OK ? 1 : 0);
		}
		ck_assert_int_gt(waiter, 0);
		wait_waiters(c, path, 1);
		outsider = spawn_outside_waiter(path);
		h_sleep(0.02);		/* into flock(2), most of the time */
		ck_assert_int_eq(locks_release(c, path), LOCKS_OK);
		ck_assert_int_eq(h_wait_exit(waiter, h_slow(10), &status), 0);
		ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0,
		    "round %d: the descriptor form failed", i);
		ck_assert_int_eq(h_wait_exit(outsider, h_slow(10), &status),
		    0);
	}
	locks_close(c);
}
END_TEST

/* Locking a descriptor again is flock(2) on its own lock: granted. */
START_TEST(test_descriptor_form_again_on_its_own_description)
{
	locks_conn		*c = h_lib_conn("da-a");
	struct locks_acquire_opts shared = LOCKS_ACQUIRE_OPTS_INIT;
	locks_list		*list = NULL;
	const locks_lock	*lock;
	char			 path[256];
	int64_t			 first = 0, again = 0;
	int			 fd;

	test_path(path, sizeof path, "da.lock");
	fd = open(path, O_RDONLY | O_CREAT | O_CLOEXEC, 0644);
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(locks_acquire_fd(c, fd, NULL, &first), LOCKS_OK);
	ck_assert_int_eq(locks_acquire_fd(c, fd, NULL, &again), LOCKS_OK);
	ck_assert_int_gt(again, first);
	ck_assert_int_eq(flock_free(path), 0);
	/* list shows the one holder, with the new token. */
	lock = listed(c, path, &list);
	ck_assert_ptr_nonnull(lock);
	ck_assert_int_eq(locks_lock_nholders(lock), 1);
	ck_assert_int_eq(locks_holder_token(locks_lock_holder(lock, 0)), again);
	locks_list_free(list);
	/* A conversion is refused, and the lock is left as it was. */
	shared.mode = LOCKS_SHARED;
	ck_assert_int_eq(locks_acquire_fd(c, fd, &shared, NULL),
	    LOCKS_E_UNSUPPORTED);
	ck_assert_int_eq(flock_free(path), 0);
	close(fd);
	ck_assert_int_eq(flock_free(path), 1);
	locks_close(c);
}
END_TEST

/* flock(1) outside the broker on a path lock's file is shown, by pid. */
START_TEST(test_outside_holder_of_a_path_is_listed)
{
	locks_conn		*c = h_lib_conn("po-a");
	struct locks_acquire_opts opts = LOCKS_ACQUIRE_OPTS_INIT;
	locks_list		*list = NULL;
	const locks_lock	*lock;
	struct h_flock		 outsider;
	char			 path[256];

	test_path(path, sizeof path, "po.lock");
	ck_assert_int_eq(h_flock_spawn(&outsider, "-x", path), 0);
	opts.timeout = 0;
	ck_assert_int_eq(locks_acquire(c, path, &opts, NULL), LOCKS_E_TIMEOUT);
	h_sleep(H_OUTSIDE_STALE_SECS);	/* past any scan made before */
	ck_assert_int_eq(locks_list_query(c, path, LOCKS_LIST_ALL, &list),
	    LOCKS_OK);
	ck_assert_int_eq(locks_list_count(list), 1);
	lock = locks_list_lock(list, 0);
	ck_assert_int_eq(locks_lock_nholders(lock), 1);
	ck_assert(locks_holder_external(locks_lock_holder(lock, 0)));
	ck_assert_int_eq(locks_holder_pid(locks_lock_holder(lock, 0)),
	    outsider.pid);
	locks_list_free(list);
	h_flock_kill(&outsider);
	locks_close(c);
}
END_TEST

/* The wire: a descriptor where none is taken, or too many, is refused. */
START_TEST(test_descriptors_come_only_where_a_request_takes_them)
{
	struct h_conn		*c = h_connect();
	struct json_object	*r;
	char			 path[256], line[512];
	int			 fds[3];

	test_path(path, sizeof path, "wire.lock");
	fds[0] = open(path, O_RDONLY | O_CREAT | O_CLOEXEC, 0644);
	ck_assert_int_ge(fds[0], 0);
	fds[1] = fds[2] = fds[0];

	h_send_with_fds(c, "{\"id\":1,\"op\":\"acquire\",\"name\":\"w1\"}\n",
	    fds, 1);
	r = h_recv(c, H_REPLY_SECS);
	EXPECT_ERROR(r, "bad_request");
	ck_assert_ptr_nonnull(strstr(h_json(r), "takes none"));

	snprintf(line, sizeof line, "{\"id\":2,\"op\":\"acquire\","
	    "\"name\":\"%s\"}\n", path);
	h_send_with_fds(c, line, fds, 2);
	r = h_recv(c, H_REPLY_SECS);
	EXPECT_ERROR(r, "bad_request");
	ck_assert_ptr_nonnull(strstr(h_json(r), "2 came"));

	h_send_with_fds(c, line, fds, 3);
	EXPECT_ERROR(h_recv(c, H_REPLY_SECS), "bad_request");

	/* The connection still works, and a right request is granted. */
	h_send_with_fds(c, line, fds, 1);
	r = h_recv(c, H_REPLY_SECS);
	EXPECT_OK(r);
	ck_assert_str_eq(h_str(r, "name"), path);
	close(fds[0]);
	EXPECT_OK(h_request(c, "{\"op\":\"release\",\"name\":\"%s\"}", path));
	h_conn_close(c);
}
END_TEST

/*
 * Descriptors wait for their line, however the reads fall: a long line
 * before a path request makes the request straddle two reads, and the
 * next request's descriptors arrive before the first request is whole.
 */
START_TEST(test_descriptors_wait_for_a_line_split_across_reads)
{
	struct h_conn		*c = h_connect();
	struct json_object	*r;
	char			 x[256], y[256], line[512], *pad;
	int			 fx, fy;
	size_t			 padlen = 65500;

	test_path(x, sizeof x, "split-x.lock");
	test_path(y, sizeof y, "split-y.lock");
	fx = open(x, O_RDONLY | O_CREAT | O_CLOEXEC, 0644);
	fy = open(y, O_RDONLY | O_CREAT | O_CLOEXEC, 0644);
	ck_assert(fx >= 0 && fy >= 0);
	pad = malloc(padlen + 64);
	ck_assert_ptr_nonnull(pad);
	snprintf(pad, padlen + 64, "{\"id\":1,\"op\":\"ping\",\"pad\":\"%*s\"}\n",
	    (int)(padlen - 40), "");
	/* Stopped, the daemon reads all three at once when it resumes. */
	ck_assert_int_eq(kill(h_srv.pid, SIGSTOP), 0);
	ck_assert_int_eq(h_send_raw(c, pad, strlen(pad)), 0);
	snprintf(line, sizeof line, "{\"id\":2,\"op\":\"acquire\","
	    "\"name\":\"%s\"}\n", x);
	h_send_with_fds(c, line, &fx, 1);
	snprintf(line, sizeof line, "{\"id\":3,\"op\":\"acquire\","
	    "\"name\":\"%s\"}\n", y);
	h_send_with_fds(c, line, &fy, 1);
	ck_assert_int_eq(kill(h_srv.pid, SIGCONT), 0);
	EXPECT_OK(h_recv(c, H_REPLY_SECS));
	r = h_recv(c, H_REPLY_SECS);
	EXPECT_OK(r);
	ck_assert_str_eq(h_str(r, "name"), x);
	r = h_recv(c, H_REPLY_SECS);
	EXPECT_OK(r);
	ck_assert_str_eq(h_str(r, "name"), y);
	free(pad);
	close(fx);
	close(fy);
	h_conn_close(c);
}
END_TEST

static Suite *
paths_suite(void)
{
	Suite	*s = suite_create("paths");
	TCase	*tc;

	tc = h_daemon_tcase("paths", 60);
	tcase_add_test(tc, test_path_lock_excludes_flock_and_is_listed_by_path);
	tcase_add_test(tc, test_path_lock_creates_the_file_like_flock);
	tcase_add_test(tc, test_path_and_name_share_one_fifo_queue);
	tcase_add_test(tc, test_two_paths_to_one_file_are_one_lock);
	tcase_add_test(tc, test_path_refuses_what_it_cannot_lock);
	tcase_add_test(tc, test_path_of_any_bytes_is_listed_as_utf8);
	tcase_add_test(tc, test_path_to_a_replaced_lock_file_locks_that_file);
	tcase_add_test(tc,
	    test_descriptor_form_lives_as_long_as_the_descriptor);
	tcase_add_test(tc, test_descriptor_form_waits_in_fifo_order);
	tcase_add_test(tc, test_descriptor_form_outlasts_an_outside_waiter);
	tcase_add_test(tc, test_descriptor_form_again_on_its_own_description);
	tcase_add_test(tc, test_outside_holder_of_a_path_is_listed);
	tcase_add_test(tc,
	    test_descriptors_come_only_where_a_request_takes_them);
	tcase_add_test(tc,
	    test_descriptors_wait_for_a_line_split_across_reads);
	suite_add_tcase(s, tc);
	return s;
}

/* The tests run forked: see harness.h. */
int
main(void)
{
	return h_run_suite(paths_suite());
}
