/*
 * What locksd checks before and while it serves a lock dir: that its
 * fencing tokens are saved before they go out, that no other daemon
 * serves the same lock dir, that the lock dir is still the one it opened,
 * that nobody else controls the socket's directory or the lock dir, and
 * how many connections one user may keep open.
 *
 * Each test starts daemons of its own, in a fresh directory of the run.
 * The tests about other users need root (chown, setuid); they skip with a
 * reason otherwise.
 */

#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <inttypes.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <check.h>

#include "harness.h"

#define NOBODY		65534	/* nobody's uid, and its group's gid */

/* Skip (return 1) unless root: the test chowns files or changes uid. */
static int
skip_unless_root(const char *test)
{
	if (geteuid() == 0)
		return 0;
	fprintf(stderr, "SKIP %s: needs root to act as another user\n", test);
	return 1;
}

/* A fresh directory of the run, 0711 and ours, for one test's daemons. */
static void
fresh_dir(char *buf, size_t size)
{
	snprintf(buf, size, "%s/s-XXXXXX", h_run_dir());
	ck_assert_ptr_nonnull(mkdtemp(buf));
	ck_assert_int_eq(chmod(buf, 0711), 0);
}

/* Read up to size - 1 bytes of a file as a string ("" if unreadable). */
static const char *
slurp(const char *path, char *buf, size_t size)
{
	ssize_t	 n;
	int	 fd;

	buf[0] = '\0';
	if ((fd = open(path, O_RDONLY | O_CLOEXEC)) == -1)
		return buf;
	if ((n = read(fd, buf, size - 1)) > 0)
		buf[n] = '\0';
	close(fd);
	return buf;
}

/* How many lines of text start with prefix. */
static int
count_lines(const char *text, const char *prefix)
{
	const char	*p;
	int		 n = 0;

	for (p = text; *p != '\0'; p = strchr(p, '\n') + 1) {
		if (strncmp(p, prefix, strlen(prefix)) == 0)
			n++;
		if (strchr(p, '\n') == NULL)
			break;
	}
	return n;
}

/*
 * Spawn d, which must refuse to start: exit non-zero within a few
 * seconds, its log saying each of the texts given (NULL ends them).
 */
static void
expect_refused(struct h_daemon *d, const char *text, const char *text2)
{
	char	 log[4096];
	pid_t	 pid;
	int	 status;

	unlink(d->log_path);
	ck_assert_int_ne(pid = h_daemon_spawn(d), -1);
	if (h_wait_exit(pid, h_slow(H_START_SECS), &status) == -1) {
		kill(pid, SIGKILL);
		waitpid(pid, NULL, 0);
		ck_abort_msg("locksd started, but should have refused: %s",
		    slurp(d->log_path, log, sizeof log));
	}
	slurp(d->log_path, log, sizeof log);
	ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) != 0,
	    "locksd refused with status %#x, not a non-zero exit: %s",
	    status, log);
	ck_assert_msg(strstr(log, text) != NULL, "no \"%s\" in the log: %s",
	    text, log);
	ck_assert_msg(text2 == NULL || strstr(log, text2) != NULL,
	    "no \"%s\" in the log: %s", text2, log);
	/* One clear line: the refusal is all locksd says. */
	ck_assert_msg(count_lines(log, "locksd: ") == 1,
	    "not one line: %s", log);
}

/* The token ceiling saved in d's lock dir. */
static int64_t
saved_ceiling(const struct h_daemon *d)
{
	char	 path[PATH_MAX], buf[64];
	int64_t	 ceiling = 0;

	snprintf(path, sizeof path, "%s/.tokens", d->lock_dir);
	ck_assert_msg(sscanf(slurp(path, buf, sizeof buf), "%" SCNd64,
	    &ceiling) == 1, "no ceiling in %s", path);
	return ceiling;
}

/* Plant a directory at the name .tokens is written to first. */
static void
plant_tokens_tmp(const struct h_daemon *d, int plant)
{
	char	 path[PATH_MAX];

	snprintf(path, sizeof path, "%s/.tokens.tmp", d->lock_dir);
	if (plant)
		ck_assert_int_eq(mkdir(path, 0755), 0);
	else
		ck_assert_int_eq(rmdir(path), 0);
}

/*
 * Fencing tokens.
 */

START_TEST(test_start_refused_when_the_token_ceiling_cannot_be_saved)
{
	struct h_daemon	 d;
	char		 dir[PATH_MAX], text[PATH_MAX + 64];

	memset(&d, 0, sizeof d);
	fresh_dir(dir, sizeof dir);
	ck_assert_int_eq(h_daemon_paths(&d, dir), 0);
	ck_assert_int_eq(mkdir(d.lock_dir, 0755), 0);
	plant_tokens_tmp(&d, 1);
	snprintf(text, sizeof text, "cannot save the token ceiling in "
	    "%s/.tokens.tmp: Is a directory", d.lock_dir);
	expect_refused(&d, text, NULL);
	plant_tokens_tmp(&d, 0);
	ck_assert_msg(h_daemon_start_in(&d, dir) == 0, "%s", h_error());
	ck_assert_msg(h_daemon_stop(&d) == 0, "%s", h_error());
}
END_TEST

/*
 * The attack from the issue: a ceiling far above the clock is saved (any
 * run saves one 1e9 tokens ahead), the next run cannot save its own and
 * is killed.  Every token after the restart must be above every token
 * handed out before.
 */
START_TEST(test_tokens_after_a_failed_save_and_kill_9_stay_above_all_before)
{
	struct h_daemon	 d;
	int64_t		 last, t;
	pid_t		 pid;
	int		 i;

	memset(&d, 0, sizeof d);
	ck_assert_msg(h_daemon_start(&d) == 0, "%s", h_error());
	last = h_token_from(&d, "kill9-x");
	ck_assert_msg(h_daemon_stop(&d) == 0, "%s", h_error());

	/* A run that cannot save a ceiling must hand out nothing. */
	plant_tokens_tmp(&d, 1);
	pid = h_daemon_spawn(&d);
	if (h_daemon_wait_ready(&d, pid) == 0) {
		t = h_token_from(&d, "kill9-x");
		last = t > last ? t : last;
		h_daemon_kill(&d);
	}
	plant_tokens_tmp(&d, 0);
	ck_assert_msg(h_daemon_restart(&d) == 0, "%s", h_error());
	t = h_token_from(&d, "kill9-x");
	ck_assert_msg(t > last, "token %lld after a run that could not save "
	    "its ceiling, not above %lld", (long long)t, (long long)last);
	last = t;

	/* Saves that fail while it runs: tokens stay under the ceiling. */
	plant_tokens_tmp(&d, 1);
	h_sleep(1.5);		/* a tick may try to save, and fail */
	for (i = 0; i < 5; i++) {
		t = h_token_from(&d, "kill9-x");
		ck_assert_int_gt(t, last);
		ck_assert_msg(t <= saved_ceiling(&d), "token %lld above the "
		    "saved ceiling %lld", (long long)t,
		    (long long)saved_ceiling(&d));
		last = t;
	}
	h_daemon_kill(&d);
	plant_tokens_tmp(&d, 0);
	ck_assert_msg(h_daemon_restart(&d) == 0, "%s", h_error());
	t = h_token_from(&d, "kill9-x");
	ck_assert_msg(t > last, "token %lld after kill -9, not above %lld",
	    (long long)t, (long long)last);
	ck_assert_msg(h_daemon_stop(&d) == 0, "%s", h_error());
}
END_TEST

/*
 * One daemon per lock dir.
 */

START_TEST(test_second_daemon_on_a_lock_dir_is_refused_naming_the_first)
{
	struct h_daemon	 a, b;
	struct h_conn	*c;
	char		 dir[PATH_MAX], text[PATH_MAX + 64];

	memset(&a, 0, sizeof a);
	memset(&b, 0, sizeof b);
	ck_assert_msg(h_daemon_start(&a) == 0, "%s", h_error());
	c = h_connect_to(a.socket_path);
	h_take(c, "claim-x", "exclusive");

	fresh_dir(dir, sizeof dir);
	ck_assert_int_eq(h_daemon_paths(&b, dir), 0);
	snprintf(b.lock_dir, sizeof b.lock_dir, "%s", a.lock_dir);
	snprintf(text, sizeof text, "another locksd (pid %ld) already uses "
	    "the lock dir %s", (long)a.pid, a.lock_dir);
	expect_refused(&b, text, NULL);

	/* A is unaffected, and once it is gone another may start. */
	EXPECT_OK(h_request(c, "{\"op\":\"ping\",\"id\":1}"));
	h_drop(c, "claim-x");
	h_conn_close(c);
	ck_assert_msg(h_daemon_stop(&a) == 0, "%s", h_error());
	ck_assert_msg(h_daemon_wait_ready(&b, h_daemon_spawn(&b)) == 0, "%s",
	    h_error());
	ck_assert_msg(h_daemon_stop(&b) == 0, "%s", h_error());
}
END_TEST

/*
 * The lock dir removed under the daemon.
 */

/*
 * A ceiling far above the clock stands in for a clock stepped back: a
 * restart that lost it would start from the clock, below the tokens
 * handed out before.
 */
START_TEST(test_removed_lock_dir_makes_the_daemon_exit_and_tokens_rise)
{
	struct h_daemon	 d;
	char		 log[4096], path[PATH_MAX];
	int64_t		 ahead, before, after;
	int		 status;
	FILE		*fp;

	memset(&d, 0, sizeof d);
	ck_assert_msg(h_daemon_start(&d) == 0, "%s", h_error());
	ck_assert_msg(h_daemon_stop(&d) == 0, "%s", h_error());
	snprintf(path, sizeof path, "%s/.tokens", d.lock_dir);
	ahead = saved_ceiling(&d) + 5000000000000LL;	/* 58 days */
	ck_assert_ptr_nonnull(fp = fopen(path, "w"));
	fprintf(fp, "%" PRId64 "\n", ahead);
	fclose(fp);
	ck_assert_msg(h_daemon_restart(&d) == 0, "%s", h_error());
	before = h_token_from(&d, "rmdir-x");
	ck_assert_int_gt(before, ahead);

	ck_assert_int_eq(h_system("rm -rf '%s' && mkdir '%s'", d.lock_dir,
	    d.lock_dir), 0);
	ck_assert_msg(h_wait_exit(d.pid, h_slow(5), &status) == 0,
	    "locksd kept running on a removed lock dir: %s", h_error());
	d.pid = 0;
	slurp(d.log_path, log, sizeof log);
	ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) != 0,
	    "status %#x, not a non-zero exit: %s", status, log);
	ck_assert_msg(strstr(log, d.lock_dir) != NULL &&
	    strstr(log, "removed or replaced") != NULL,
	    "no line naming the lock dir: %s", log);
	/* It left its ceiling in the new directory. */
	ck_assert_int_gt(saved_ceiling(&d), before);
	ck_assert_msg(h_daemon_restart(&d) == 0, "%s", h_error());
	after = h_token_from(&d, "rmdir-x");
	ck_assert_msg(after > before, "token %lld after the restart, not above %lld",
	    (long long)after, (long long)before);
	ck_assert_msg(h_daemon_stop(&d) == 0, "%s", h_error());
}
END_TEST

/*
 * Directories someone else controls.
 */

/* A daemon whose socket directory is dir/sub, made with mode and owner. */
static void
squatted_socket_dir(struct h_daemon *d, mode_t mode, uid_t owner)
{
	char	 dir[PATH_MAX], sub[PATH_MAX];

	memset(d, 0, sizeof *d);
	fresh_dir(dir, sizeof dir);
	ck_assert_int_eq(h_daemon_paths(d, dir), 0);
	ck_assert_int_lt(snprintf(sub, sizeof sub, "%s/sub", dir),
	    (int)sizeof sub);
	ck_assert_int_eq(mkdir(sub, 0700), 0);
	ck_assert_int_eq(chown(sub, owner, owner), 0);
	ck_assert_int_eq(chmod(sub, mode), 0);
	ck_assert_int_lt(snprintf(d->socket_path, sizeof d->socket_path,
	    "%s/sub/s.sock", dir), (int)sizeof d->socket_path);
}

/*
 * A .tokens that holds no ceiling (garbage, past 2^53, a directory) is
 * refused at start: a guess could repeat tokens.
 */
START_TEST(test_start_refused_when_the_token_ceiling_cannot_be_read)
{
	static const char *const bad[] = {
		"12abc\n", "9223372036000000000\n", "-5\n", "\n"
	};
	struct h_daemon	 d;
	char		 dir[PATH_MAX], path[PATH_MAX], text[PATH_MAX + 64];
	size_t		 i;
	int		 fd;

	memset(&d, 0, sizeof d);
	fresh_dir(dir, sizeof dir);
	ck_assert_int_eq(h_daemon_paths(&d, dir), 0);
	ck_assert_int_eq(mkdir(d.lock_dir, 0755), 0);
	snprintf(path, sizeof path, "%s/.tokens", d.lock_dir);
	snprintf(text, sizeof text, "cannot read the token ceiling %s: ",
	    path);
	for (i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
		ck_assert_int_ge(fd, 0);
		ck_assert_int_eq(write(fd, bad[i], strlen(bad[i])),
		    (ssize_t)strlen(bad[i]));
		close(fd);
		expect_refused(&d, text, "below 2^53");
	}
	ck_assert_int_eq(unlink(path), 0);
	ck_assert_int_eq(mkdir(path, 0755), 0);
	expect_refused(&d, text, "Is a directory");
	ck_assert_int_eq(rmdir(path), 0);
	ck_assert_msg(h_daemon_start_in(&d, dir) == 0, "%s", h_error());
	ck_assert_msg(h_daemon_stop(&d) == 0, "%s", h_error());
}
END_TEST

/*
 * A socket directory that is another user's symlink could be pointed
 * elsewhere at any time, even at a directory of ours: refused.
 */
START_TEST(test_socket_dir_that_is_another_users_symlink_is_refused)
{
	struct h_daemon	 d;
	char		 dir[PATH_MAX], target[PATH_MAX + 8], link[PATH_MAX + 8];
	char		 text[PATH_MAX + 128];

	if (skip_unless_root(__func__))
		return;
	memset(&d, 0, sizeof d);
	fresh_dir(dir, sizeof dir);
	ck_assert_int_eq(h_daemon_paths(&d, dir), 0);
	snprintf(target, sizeof target, "%s/mine", dir);
	snprintf(link, sizeof link, "%s/link", dir);
	ck_assert_int_eq(mkdir(target, 0700), 0);
	ck_assert_int_eq(symlink(target, link), 0);
	ck_assert_int_eq(lchown(link, NOBODY, NOBODY), 0);
	ck_assert_int_lt(snprintf(d.socket_path, sizeof d.socket_path,
	    "%s/s.sock", link), (int)sizeof d.socket_path);
	snprintf(text, sizeof text, "refusing the socket directory %s: it is "
	    "a symbolic link owned by uid %d", link, NOBODY);
	expect_refused(&d, text, NULL);

	/* Our own symlink (or root's, as /var/run is) is followed. */
	ck_assert_int_eq(lchown(link, 0, 0), 0);
	ck_assert_msg(h_daemon_wait_ready(&d, h_daemon_spawn(&d)) == 0, "%s",
	    h_error());
	ck_assert_msg(h_daemon_stop(&d) == 0, "%s", h_error());
}
END_TEST

START_TEST(test_socket_dir_owned_by_another_user_is_refused)
{
	struct h_daemon	 d;
	char		 text[PATH_MAX + 64];

	if (skip_unless_root(__func__))
		return;
	squatted_socket_dir(&d, 0755, NOBODY);
	snprintf(text, sizeof text, "refusing the socket directory %s/sub: "
	    "it is owned by uid %d", d.dir, NOBODY);
	expect_refused(&d, text, NULL);
}
END_TEST

START_TEST(test_world_writable_socket_dir_is_refused_unless_sticky)
{
	struct h_daemon	 d;
	char		 text[PATH_MAX + 64];

	squatted_socket_dir(&d, 0777, geteuid());
	snprintf(text, sizeof text, "refusing the socket directory %s/sub: "
	    "group or others may write to it", d.dir);
	expect_refused(&d, text, "0777");

	squatted_socket_dir(&d, 01777, geteuid());
	ck_assert_msg(h_daemon_wait_ready(&d, h_daemon_spawn(&d)) == 0, "%s",
	    h_error());
	ck_assert_msg(h_daemon_stop(&d) == 0, "%s", h_error());
}
END_TEST

/*
 * Like --socket /tmp/x.sock with no --lock-dir: the socket in a sticky
 * shared directory, its default lock dir beside it made by another user.
 */
START_TEST(test_default_lock_dir_owned_by_another_user_is_refused)
{
	struct h_daemon	 d;
	char		 text[PATH_MAX + 64], lock_dir[PATH_MAX];
	pid_t		 pid;

	if (skip_unless_root(__func__))
		return;
	squatted_socket_dir(&d, 01777, 0);
	snprintf(lock_dir, sizeof lock_dir, "%s/sub/locks", d.dir);
	ck_assert_int_eq(mkdir(lock_dir, 0755), 0);
	ck_assert_int_eq(chown(lock_dir, NOBODY, NOBODY), 0);
	/* No --lock-dir: locks/ beside the socket is the default. */
	d.env_only = 1;
	snprintf(text, sizeof text, "refusing the lock directory %s: it is "
	    "owned by uid %d", lock_dir, NOBODY);
	expect_refused(&d, text, NULL);

	/* The same with an explicit --lock-dir, and with mode 0777. */
	d.env_only = 0;
	ck_assert_int_lt(snprintf(d.lock_dir, sizeof d.lock_dir, "%s",
	    lock_dir), (int)sizeof d.lock_dir);
	expect_refused(&d, text, NULL);
	ck_assert_int_eq(chown(lock_dir, 0, 0), 0);
	ck_assert_int_eq(chmod(lock_dir, 0777), 0);
	expect_refused(&d, "group or others may write to it", NULL);
	/*
	 * Sticky is no excuse for a lock dir: others could still make its
	 * dot-files (.locksd, .tokens.tmp) first.
	 */
	ck_assert_int_eq(chmod(lock_dir, 01777), 0);
	expect_refused(&d, "group or others may write to it (mode 1777)",
	    NULL);
	ck_assert_int_eq(chmod(lock_dir, 0755), 0);
	pid = h_daemon_spawn(&d);
	ck_assert_msg(h_daemon_wait_ready(&d, pid) == 0, "%s", h_error());
	ck_assert_msg(h_daemon_stop(&d) == 0, "%s", h_error());
}
END_TEST

/*
 * A user's own daemon creates its per-user socket directory 0700: run as
 * nobody, with XDG_RUNTIME_DIR naming a directory nobody owns.
 */
START_TEST(test_non_root_daemon_creates_its_socket_dir_0700)
{
	struct stat	 sb;
	char		 dir[PATH_MAX], sock[PATH_MAX], sub[PATH_MAX];
	double		 deadline;
	pid_t		 parent = getpid(), pid;
	int		 status;

	if (skip_unless_root(__func__))
		return;
	fresh_dir(dir, sizeof dir);
	ck_assert_int_eq(chown(dir, NOBODY, NOBODY), 0);
	ck_assert_int_eq(chmod(dir, 0700), 0);
	ck_assert_int_lt(snprintf(sub, sizeof sub, "%s/locksd", dir),
	    (int)sizeof sub);
	ck_assert_int_lt(snprintf(sock, sizeof sock, "%s/locksd/locksd.sock",
	    dir), (int)sizeof sock);
	fflush(NULL);
	ck_assert_int_ne(pid = fork(), -1);
	if (pid == 0) {
		if (prctl(PR_SET_PDEATHSIG, SIGKILL) == -1 ||
		    getppid() != parent || setgroups(0, NULL) == -1 ||
		    setgid(NOBODY) == -1 || setuid(NOBODY) == -1)
			_exit(127);
		setenv("XDG_RUNTIME_DIR", dir, 1);
		unsetenv("LOCKS_SOCKET");
		execl(LOCKSD_PATH, LOCKSD_PATH, (char *)NULL);
		_exit(127);
	}
	deadline = h_now() + h_slow(H_START_SECS);
	while (stat(sock, &sb) == -1 && h_now() < deadline)
		h_sleep(0.02);
	ck_assert_int_eq(stat(sub, &sb), 0);
	kill(pid, SIGTERM);
	ck_assert_msg(h_wait_exit(pid, h_slow(H_START_SECS), &status) == 0,
	    "%s", h_error());
	ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0,
	    "status %#x", status);
	ck_assert_msg((sb.st_mode & 07777) == 0700, "%s is mode %04o", sub,
	    (unsigned)sb.st_mode & 07777);
	ck_assert_int_eq(sb.st_uid, NOBODY);
}
END_TEST

/*
 * Connections per user.
 */

/* In a child as nobody: connect to path, ping; exit 0 if answered ok. */
static int
nobody_pings(const char *path)
{
	pid_t	 parent = getpid(), pid;
	int	 status;

	fflush(NULL);
	ck_assert_int_ne(pid = fork(), -1);
	if (pid == 0) {
		struct h_conn	*c;

		if (prctl(PR_SET_PDEATHSIG, SIGKILL) == -1 ||
		    getppid() != parent || setgroups(0, NULL) == -1 ||
		    setgid(NOBODY) == -1 || setuid(NOBODY) == -1)
			_exit(127);
		if ((c = h_conn_open(path)) == NULL)
			_exit(3);
		_exit(h_ok(h_request(c, "{\"op\":\"ping\",\"id\":1}")) ? 0 : 4);
	}
	ck_assert_msg(h_wait_exit(pid, h_slow(H_REPLY_SECS), &status) == 0,
	    "%s", h_error());
	return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

START_TEST(test_connection_past_max_clients_per_uid_gets_limit)
{
	struct h_daemon		 d;
	struct h_conn		*c[4];
	struct json_object	*r;
	int			 i;

	if (skip_unless_root(__func__))
		return;
	memset(&d, 0, sizeof d);
	d.extra[0] = "--max-clients-per-uid";
	d.extra[1] = "3";
	ck_assert_msg(h_daemon_start(&d) == 0, "%s", h_error());
	for (i = 0; i < 3; i++) {
		c[i] = h_connect_to(d.socket_path);
		EXPECT_OK(h_request(c[i], "{\"op\":\"ping\",\"id\":1}"));
	}
	/* The fourth of this uid: one limit line with a null id, then EOF. */
	c[3] = h_connect_to(d.socket_path);
	r = h_recv(c[3], h_slow(H_REPLY_SECS));
	EXPECT_ERROR(r, "limit");
	EXPECT_NULL_ID(r);
	ck_assert_msg(h_recv_closed(c[3], h_slow(2)),
	    "no EOF after the refusal: %s", h_error());
	h_conn_close(c[3]);

	/* Another user still gets in, and the first three are served. */
	ck_assert_int_eq(nobody_pings(d.socket_path), 0);
	for (i = 0; i < 3; i++)
		EXPECT_OK(h_request(c[i], "{\"op\":\"ping\",\"id\":2}"));
	/* Once one leaves, this uid may connect again. */
	h_conn_close(c[0]);
	h_sleep(0.2);
	c[0] = h_connect_to(d.socket_path);
	EXPECT_OK(h_request(c[0], "{\"op\":\"ping\",\"id\":3}"));
	h_conn_close_all();
	ck_assert_msg(h_daemon_stop(&d) == 0, "%s", h_error());
}
END_TEST

/*
 * Past --max-lock-files an acquire of a new name gets limit, naming the
 * bound; names whose file exists keep working, counted across restarts.
 */
START_TEST(test_new_lock_files_past_max_lock_files_get_limit)
{
	struct h_daemon		 d;
	struct h_conn		*c;
	struct json_object	*r;
	char			 path[PATH_MAX];
	int			 fd;

	memset(&d, 0, sizeof d);
	d.extra[0] = "--max-lock-files";
	d.extra[1] = "2";
	ck_assert_msg(h_daemon_start(&d) == 0, "%s", h_error());
	c = h_connect_to(d.socket_path);
	EXPECT_OK(h_request(c, "{\"op\":\"acquire\",\"name\":\"mf-1\"}"));
	EXPECT_OK(h_request(c, "{\"op\":\"acquire\",\"name\":\"mf-2\"}"));
	r = h_request(c, "{\"op\":\"acquire\",\"name\":\"mf-3\"}");
	EXPECT_ERROR(r, "limit");
	ck_assert_ptr_nonnull(strstr(h_json(r), "--max-lock-files"));
	snprintf(path, sizeof path, "%s/mf-3", d.lock_dir);
	ck_assert_int_eq(access(path, F_OK), -1);
	EXPECT_OK(h_request(c, "{\"op\":\"release\",\"name\":\"mf-1\"}"));
	EXPECT_OK(h_request(c, "{\"op\":\"acquire\",\"name\":\"mf-1\"}"));
	/* A file someone else made is a name that exists. */
	snprintf(path, sizeof path, "%s/mf-out", d.lock_dir);
	ck_assert_int_ge(fd = open(path, O_RDONLY | O_CREAT, 0644), 0);
	close(fd);
	EXPECT_OK(h_request(c, "{\"op\":\"acquire\",\"name\":\"mf-out\"}"));
	h_conn_close(c);

	/* After a restart the files already there count. */
	ck_assert_msg(h_daemon_stop(&d) == 0, "%s", h_error());
	ck_assert_msg(h_daemon_restart(&d) == 0, "%s", h_error());
	c = h_connect_to(d.socket_path);
	EXPECT_ERROR(h_request(c, "{\"op\":\"acquire\",\"name\":\"mf-4\"}"),
	    "limit");
	EXPECT_OK(h_request(c, "{\"op\":\"acquire\",\"name\":\"mf-2\"}"));
	h_conn_close_all();
	ck_assert_msg(h_daemon_stop(&d) == 0, "%s", h_error());
}
END_TEST

static Suite *
startup_suite(void)
{
	Suite	*s = suite_create("startup");
	TCase	*tc;

	tc = h_tcase("tokens", 60);
	tcase_add_test(tc,
	    test_start_refused_when_the_token_ceiling_cannot_be_saved);
	tcase_add_test(tc,
	    test_start_refused_when_the_token_ceiling_cannot_be_read);
	tcase_add_test(tc,
	    test_tokens_after_a_failed_save_and_kill_9_stay_above_all_before);
	suite_add_tcase(s, tc);

	tc = h_tcase("lock_dir", 60);
	tcase_add_test(tc,
	    test_second_daemon_on_a_lock_dir_is_refused_naming_the_first);
	tcase_add_test(tc,
	    test_removed_lock_dir_makes_the_daemon_exit_and_tokens_rise);
	suite_add_tcase(s, tc);

	tc = h_tcase("dirs", 60);
	tcase_add_test(tc, test_socket_dir_owned_by_another_user_is_refused);
	tcase_add_test(tc,
	    test_socket_dir_that_is_another_users_symlink_is_refused);
	tcase_add_test(tc,
	    test_world_writable_socket_dir_is_refused_unless_sticky);
	tcase_add_test(tc,
	    test_default_lock_dir_owned_by_another_user_is_refused);
	tcase_add_test(tc, test_non_root_daemon_creates_its_socket_dir_0700);
	suite_add_tcase(s, tc);

	tc = h_tcase("lock_files", 60);
	tcase_add_test(tc, test_new_lock_files_past_max_lock_files_get_limit);
	suite_add_tcase(s, tc);

	tc = h_tcase("per_uid", 60);
	tcase_add_test(tc,
	    test_connection_past_max_clients_per_uid_gets_limit);
	suite_add_tcase(s, tc);
	return s;
}

/* Each test runs in a child its daemons die with. */
int
main(void)
{
	return h_run_suite(startup_suite());
}
