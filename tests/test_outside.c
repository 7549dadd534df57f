/*
 * Integration tests for living side by side with plain flock(1) users: a
 * real locksd whose lock files util-linux flock(1) takes from outside the
 * broker.  A broker waiter on a file held from outside is granted as soon
 * as the holder lets go, without polling (a watch thread blocks in
 * flock(2) for it); outside holders are shown in list and in the blocking
 * event; timeouts, cancellations and vanished clients interrupt the watch
 * and leave no thread or descriptor behind.  See "Outside holders" and
 * "Lock files and plain flock(1)" in protocol/PROTOCOL.md.
 *
 * As in test_wire.c, a TCase shares one daemon started in an
 * unchecked fixture, and each test uses lock names of its own.  Tests that
 * count the daemon's threads and descriptors (/proc/<pid>/task and
 * /proc/<pid>/fd) start a daemon of their own instead, so that nothing
 * another test left winding down moves their baseline.
 *
 * Time bounds are generous (and stretched under $LOCKSD_WRAPPER), with one
 * exception: the best of three outside-release-to-grant delays must be
 * under 50 ms, the promptness the requirement asks for.
 */

#include <sys/file.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <math.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <check.h>

#include "harness.h"

/* Queue an acquire (no timeout) and return its blocking event. */
static struct json_object *
queue(struct h_conn *c, const char *name, const char *mode, int id)
{
	struct json_object	*r;

	r = h_request(c, "{\"op\":\"acquire\",\"id\":%d,\"name\":\"%s\","
	    "\"mode\":\"%s\"}", id, name, mode);
	EXPECT_BLOCKING(r);
	EXPECT_ID(r, id);
	ck_assert_str_eq(h_str(r, "name"), name);
	return r;
}

/* Cancel c's waiting acquire of name (with this id) by a release. */
static void
cancel(struct h_conn *c, const char *name, int id)
{
	struct json_object	*r;

	r = h_request(c, "{\"op\":\"release\",\"id\":\"rel\",\"name\":\"%s\"}",
	    name);
	EXPECT_ERROR(r, "cancelled");
	EXPECT_ID(r, id);
	r = h_recv(c, h_slow(H_REPLY_SECS));
	EXPECT_OK(r);
	ck_assert_str_eq(h_str(r, "id"), "rel");
}

/* Send a list request (with all, and name unless NULL); the reply. */
static struct json_object *
list(struct h_conn *c, int all, const char *name)
{
	struct json_object	*r;

	if (name != NULL)
		r = h_request(c, "{\"op\":\"list\",\"all\":%s,\"name\":\"%s\"}",
		    all ? "true" : "false", name);
	else
		r = h_request(c, "{\"op\":\"list\",\"all\":%s}",
		    all ? "true" : "false");
	EXPECT_OK(r);
	ck_assert_msg(h_is(r, "locks", json_type_array), "no locks: %s",
	    h_json(r));
	return r;
}

/* The entry for name in a list reply, or NULL. */
static struct json_object *
entry_of(struct json_object *reply, const char *name)
{
	struct json_object	*entry;
	size_t			 i;

	for (i = 0; (entry = h_idx(h_get(reply, "locks"), i)) != NULL; i++) {
		if (h_str(entry, "name") != NULL &&
		    strcmp(h_str(entry, "name"), name) == 0) {
			ck_assert_msg(h_is(entry, "holders", json_type_array) &&
			    h_is(entry, "waiters", json_type_array),
			    "entry without holders and waiters: %s",
			    h_json(entry));
			return entry;
		}
	}
	return NULL;
}

/* The plain list entry for name alone, or NULL when nothing is listed. */
static struct json_object *
listed(struct h_conn *c, const char *name)
{
	struct json_object	*r;

	r = list(c, 0, name);
	ck_assert_msg(h_len(r, "locks") <= 1, "more than %s: %s", name,
	    h_json(r));
	return entry_of(r, name);
}

/* Whether a holder is marked "external": true. */
static int
is_external(struct json_object *h)
{
	struct json_object	*v = h_get(h, "external");

	return v != NULL && json_object_is_type(v, json_type_boolean) &&
	    json_object_get_boolean(v);
}

/* How many holders of an entry or event are external. */
static size_t
nexternal(struct json_object *obj)
{
	size_t	 i, n = 0;

	for (i = 0; i < h_len(obj, "holders"); i++)
		n += is_external(h_member(obj, "holders", i));
	return n;
}

/* Whether any entry of a list reply shows pid as an external holder. */
static int
lists_external_pid(struct json_object *reply, pid_t pid)
{
	struct json_object	*entry, *h;
	size_t			 i, j;

	for (i = 0; (entry = h_idx(h_get(reply, "locks"), i)) != NULL; i++) {
		for (j = 0; (h = h_idx(h_get(entry, "holders"), j)) != NULL;
		    j++) {
			if (is_external(h) && h_int(h, "pid") == pid)
				return 1;
		}
	}
	return 0;
}

/* Check an outside holder: {"external":true,"pid":P,"mode":..,"command"}. */
static void
check_external(struct json_object *h, pid_t pid, const char *mode)
{
	ck_assert_msg(is_external(h), "not external: %s", h_json(h));
	ck_assert_msg(h_int(h, "pid") == pid, "pid %ld expected: %s",
	    (long)pid, h_json(h));
	ck_assert_msg(h_str(h, "mode") != NULL &&
	    strcmp(h_str(h, "mode"), mode) == 0, "mode %s expected: %s", mode,
	    h_json(h));
	ck_assert_msg(h_str(h, "command") != NULL &&
	    strcmp(h_str(h, "command"), "flock") == 0,
	    "command flock expected: %s", h_json(h));
	/* The flock(1) runs as this test's user, which the daemon can see. */
	ck_assert_msg(h_get(h, "uid") != NULL && h_int(h, "uid") ==
	    (int64_t)getuid(), "uid %ld expected: %s", (long)getuid(),
	    h_json(h));
}

/* Check a broker holder or waiter of this test's process, in mode. */
static void
check_broker(struct json_object *h, const char *mode)
{
	ck_assert_msg(!is_external(h), "external: %s", h_json(h));
	ck_assert_msg(h_int(h, "pid") == getpid(), "pid %ld expected: %s",
	    (long)getpid(), h_json(h));
	ck_assert_msg(h_str(h, "mode") != NULL &&
	    strcmp(h_str(h, "mode"), mode) == 0, "mode %s expected: %s", mode,
	    h_json(h));
}

/* Have flock(1) hold the lock file of name from outside, in flags' mode. */
static void
outside(struct h_flock *f, const char *flags, const char *name)
{
	char	 path[PATH_MAX];

	snprintf(path, sizeof path, "%s/%s", h_srv.lock_dir, name);
	ck_assert_msg(h_flock_spawn(f, flags, path) == 0, "%s", h_error());
	h_sleep(H_OUTSIDE_STALE_SECS);
}

/* Make the outside flock(1) let go; it must exit 0. */
static void
outside_release(struct h_flock *f)
{
	ck_assert_msg(h_flock_release(f) == 0, "%s", h_error());
	h_sleep(H_OUTSIDE_STALE_SECS);
}

/* Whether an outside process could flock name exclusively right now. */
static int
flock_free(const char *name)
{
	int	 rc;

	rc = h_system("flock -x -n '%s/%s' true", h_srv.lock_dir, name);
	ck_assert_msg(rc == 0 || rc == 1, "flock -n exited %d", rc);
	return rc == 0;
}

/* Run a shell command in the background; its pid. */
static pid_t
background(const char *cmd)
{
	pid_t	 parent = getpid(), pid;

	fflush(NULL);
	pid = fork();
	ck_assert_msg(pid != -1, "fork: %s", strerror(errno));
	if (pid == 0) {
		if (prctl(PR_SET_PDEATHSIG, SIGKILL) == -1 ||
		    getppid() != parent)
			_exit(127);
		execl("/bin/sh", "sh", "-c", cmd, (char *)NULL);
		_exit(127);
	}
	return pid;
}

/*
 * The daemon's threads and descriptors.
 */

struct counts {
	int	 tasks;
	int	 fds;
};

static struct counts
counts_now(void)
{
	struct counts	 n;

	n.tasks = h_proc_count(h_srv.pid, "task");
	n.fds = h_proc_count(h_srv.pid, "fd");
	ck_assert_msg(n.tasks > 0 && n.fds > 0, "%s", h_error());
	return n;
}

/*
 * The counts once the daemon has settled with c its only connection: the
 * harness's readiness probe closed, and two readings alike.
 */
static struct counts
counts_baseline(struct h_conn *c)
{
	struct json_object	*r;
	struct counts		 a, b;
	double			 deadline = h_now() + h_slow(5);

	for (;;) {
		r = h_request(c, "{\"op\":\"status\"}");
		EXPECT_OK(r);
		if (h_int(r, "connections") == 1)
			break;
		ck_assert_msg(h_now() < deadline, "status never settled: %s",
		    h_json(r));
		h_sleep(0.01);
	}
	a = counts_now();
	for (;;) {
		h_sleep(0.05);
		b = counts_now();
		if (a.tasks == b.tasks && a.fds == b.fds)
			return b;
		ck_assert_msg(h_now() < deadline, "counts never settled");
		a = b;
	}
}

/* Wait up to secs for the counts to be back at base, and say how long. */
static void
expect_counts_back(struct counts base, double secs, const char *when)
{
	struct counts	 n;
	double		 t0 = h_now(), deadline = t0 + h_slow(secs);

	for (;;) {
		n = counts_now();
		if (n.tasks <= base.tasks && n.fds <= base.fds)
			break;
		ck_assert_msg(h_now() < deadline,
		    "%s: %d threads and %d fds after %.1f s, baseline %d and "
		    "%d", when, n.tasks, n.fds, h_slow(secs), base.tasks,
		    base.fds);
		h_sleep(0.01);
	}
	fprintf(stderr, "%s: threads %d, fds %d (baseline %d, %d) after "
	    "%.0f ms\n", when, n.tasks, n.fds, base.tasks, base.fds,
	    (h_now() - t0) * 1000);
}

/*
 * Waiting on an outside holder.
 */

START_TEST(test_outside_holder_in_blocking_event_and_grant_follows_its_exit)
{
	struct h_conn		*c = h_connect();
	struct json_object	*r;
	struct h_flock		 f;
	char			 name[32];
	double			 t0, delay, best = INFINITY;
	int			 i;

	for (i = 0; i < 3; i++) {
		snprintf(name, sizeof name, "prompt-%d", i);
		outside(&f, "-x", name);
		r = queue(c, name, "exclusive", i);
		ck_assert_int_eq(h_int(r, "position"), 1);
		EXPECT_LEN(r, "holders", 1);
		check_external(h_member(r, "holders", 0), f.pid, "exclusive");
		EXPECT_QUIET(c, 0.1);

		/* sh reads EOF and exits, then flock(1) exits and lets go. */
		t0 = h_now();
		close(f.ctl);
		f.ctl = -1;
		r = h_granted(c, i, 5);
		delay = h_now() - t0;
		outside_release(&f);
		fprintf(stderr, "outside release -> grant: %.1f ms\n",
		    delay * 1000);
		ck_assert_msg(delay < h_slow(1.0),
		    "granted %.3f s after flock(1) let go", delay);
		best = fmin(best, delay);
		ck_assert_str_eq(h_str(r, "mode"), "exclusive");
		ck_assert_msg(!flock_free(name), "the grant holds no flock");
		h_drop(c, name);
		ck_assert(flock_free(name));
	}
	fprintf(stderr, "outside release -> grant: best of 3 %.1f ms\n",
	    best * 1000);
	ck_assert_msg(best < h_slow(0.050),
	    "best outside release -> grant delay %.1f ms, not under 50 ms",
	    best * 1000);
}
END_TEST

START_TEST(test_broker_waiters_on_outside_holder_granted_in_fifo_order)
{
	enum { NWAITERS = 200 };
	struct h_conn		*w[NWAITERS];
	struct json_object	*r;
	struct h_flock		 f;
	int64_t			 token, last = 0;
	int			 i;

	outside(&f, "-x", "fifo");
	/* One at a time, each seen queued, so the arrival order is known. */
	for (i = 0; i < NWAITERS; i++) {
		w[i] = h_connect();
		r = queue(w[i], "fifo", "exclusive", i);
		ck_assert_msg(h_int(r, "position") == i + 1,
		    "waiter %d: %s", i, h_json(r));
	}
	EXPECT_QUIET(w[0], 0.1);
	outside_release(&f);

	/* Exclusive grants: reading them in arrival order proves the order. */
	for (i = 0; i < NWAITERS; i++) {
		r = h_granted(w[i], i, 5);
		token = h_int(r, "token");
		ck_assert_msg(token > last, "waiter %d got token %" PRId64
		    " after %" PRId64, i, token, last);
		last = token;
		h_drop(w[i], "fifo");
	}
	ck_assert(flock_free("fifo"));
}
END_TEST

START_TEST(test_first_broker_waiter_wins_when_outsider_lets_go_then_fifo)
{
	struct h_conn		*a = h_connect(), *b = h_connect();
	struct json_object	*ra, *rb;
	struct h_flock		 f;
	char			 cmd[PATH_MAX + 64];
	pid_t			 rival;
	int			 status;

	outside(&f, "-x", "fair");
	ck_assert_int_eq(h_int(queue(a, "fair", "exclusive", 1), "position"),
	    1);
	ck_assert_int_eq(h_int(queue(b, "fair", "exclusive", 2), "position"),
	    2);
	outside_release(&f);
	ra = h_granted(a, 1, 2);
	EXPECT_QUIET(b, 0.3);
	ck_assert_msg(!flock_free("fair"), "an outsider got in beside A");

	/*
	 * An outsider blocked in flock(2) while A holds must not slip in
	 * between A and B: the handoff keeps the file locked.
	 */
	snprintf(cmd, sizeof cmd, "exec flock -x -w 1 '%s/fair' true",
	    h_srv.lock_dir);
	rival = background(cmd);
	h_sleep(0.3);
	h_drop(a, "fair");
	rb = h_granted(b, 2, 2);
	ck_assert_msg(h_int(rb, "token") > h_int(ra, "token"),
	    "B's token %" PRId64 " is not above A's %" PRId64,
	    h_int(rb, "token"), h_int(ra, "token"));
	ck_assert_msg(h_wait_exit(rival, 5, &status) == 0, "%s", h_error());
	ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 1,
	    "the rival flock(1) got the lock between A and B (status %#x)",
	    status);
	h_drop(b, "fair");
	ck_assert(flock_free("fair"));
}
END_TEST

START_TEST(test_cancelled_exclusive_head_lets_shared_join_outside_shared)
{
	struct h_conn		*x = h_connect(), *s = h_connect();
	struct h_conn		*t = h_connect();
	struct json_object	*r, *entry;
	struct h_flock		 f;

	outside(&f, "-s", "mode-sh");
	r = queue(x, "mode-sh", "exclusive", 1);
	EXPECT_LEN(r, "holders", 1);
	check_external(h_member(r, "holders", 0), f.pid, "shared");
	r = queue(s, "mode-sh", "shared", 2);
	ck_assert_int_eq(h_int(r, "position"), 2);
	/* A shared request never overtakes a queued exclusive one. */
	EXPECT_QUIET(s, 0.2);

	cancel(x, "mode-sh", 1);
	r = h_granted(s, 2, 2);
	ck_assert_str_eq(h_str(r, "mode"), "shared");

	/* It holds beside the outsider, who never let go. */
	ck_assert_msg(kill(f.pid, 0) == 0, "flock(1) is gone");
	entry = listed(t, "mode-sh");
	ck_assert_ptr_nonnull(entry);
	EXPECT_LEN(entry, "holders", 2);
	check_broker(h_member(entry, "holders", 0), "shared");
	check_external(h_member(entry, "holders", 1), f.pid, "shared");
	EXPECT_LEN(entry, "waiters", 0);
	h_drop(s, "mode-sh");
	outside_release(&f);
	ck_assert(flock_free("mode-sh"));
}
END_TEST

START_TEST(test_watch_follows_the_head_mode_after_a_cancel)
{
	struct h_conn		*s = h_connect(), *x = h_connect();
	struct json_object	*r;
	struct h_flock		 f;

	outside(&f, "-x", "mode-ex");
	queue(s, "mode-ex", "shared", 1);
	queue(x, "mode-ex", "exclusive", 2);
	cancel(s, "mode-ex", 1);
	outside_release(&f);
	r = h_granted(x, 2, 2);
	ck_assert_str_eq(h_str(r, "mode"), "exclusive");
	/* The exclusive grant holds an exclusive flock, not a shared one. */
	ck_assert_int_eq(h_system("flock -s -n '%s/mode-ex' true",
	    h_srv.lock_dir), 1);
	h_drop(x, "mode-ex");
	ck_assert(flock_free("mode-ex"));
}
END_TEST

/*
 * Sharing with outside holders.
 */

START_TEST(test_broker_shared_holder_and_outside_shared_flock_coexist)
{
	struct h_conn		*s = h_connect(), *t = h_connect();
	struct json_object	*entry;
	struct h_flock		 f1, f2;
	pid_t			 p1, p2;

	/* Outside first, then the broker, then outside again. */
	outside(&f1, "-s", "co-sh");
	h_take(s, "co-sh", "shared");
	outside(&f2, "-s", "co-sh");

	entry = listed(t, "co-sh");
	ck_assert_ptr_nonnull(entry);
	ck_assert_msg(h_len(entry, "holders") == 3, "holders: %s",
	    h_json(entry));
	/* The broker's holders come first, then the outside ones. */
	check_broker(h_member(entry, "holders", 0), "shared");
	p1 = (pid_t)h_int(h_member(entry, "holders", 1), "pid");
	p2 = (pid_t)h_int(h_member(entry, "holders", 2), "pid");
	ck_assert_msg((p1 == f1.pid && p2 == f2.pid) ||
	    (p1 == f2.pid && p2 == f1.pid), "outside pids %ld and %ld "
	    "expected: %s", (long)f1.pid, (long)f2.pid, h_json(entry));
	check_external(h_member(entry, "holders", 1), p1, "shared");
	check_external(h_member(entry, "holders", 2), p2, "shared");
	EXPECT_LEN(entry, "waiters", 0);

	/* Another broker client joins them at once. */
	h_take(t, "co-sh", "shared");
	h_drop(t, "co-sh");
	outside_release(&f1);
	outside_release(&f2);
	entry = listed(t, "co-sh");
	EXPECT_LEN(entry, "holders", 1);
	ck_assert_int_eq(nexternal(entry), 0);
	h_drop(s, "co-sh");
}
END_TEST

START_TEST(test_outside_exclusive_flock_fails_while_the_broker_holds)
{
	struct h_conn	*c = h_connect();

	h_take(c, "co-ex", "shared");
	ck_assert_int_eq(h_system("flock -x -w 1 '%s/co-ex' true",
	    h_srv.lock_dir), 1);
	h_drop(c, "co-ex");
	h_take(c, "co-ex", "exclusive");
	ck_assert_int_eq(h_system("flock -x -w 1 '%s/co-ex' true",
	    h_srv.lock_dir), 1);
	h_drop(c, "co-ex");
	ck_assert_int_eq(h_system("flock -x -w 1 '%s/co-ex' true",
	    h_srv.lock_dir), 0);
}
END_TEST

/*
 * Outside holders in list.
 */

START_TEST(test_lock_held_only_from_outside_is_listed_while_a_client_waits)
{
	struct h_conn		*c = h_connect(), *t = h_connect();
	struct json_object	*entry;
	struct h_flock		 f;

	outside(&f, "-x", "l-wait");
	ck_assert_ptr_null(listed(t, "l-wait"));
	queue(c, "l-wait", "exclusive", 1);

	entry = listed(t, "l-wait");
	ck_assert_ptr_nonnull(entry);
	EXPECT_LEN(entry, "holders", 1);
	check_external(h_member(entry, "holders", 0), f.pid, "exclusive");
	EXPECT_LEN(entry, "waiters", 1);
	check_broker(h_member(entry, "waiters", 0), "exclusive");

	/* The same entry in the list of every lock. */
	entry = entry_of(list(t, 0, NULL), "l-wait");
	ck_assert_ptr_nonnull(entry);
	EXPECT_LEN(entry, "holders", 1);
	check_external(h_member(entry, "holders", 0), f.pid, "exclusive");
	EXPECT_LEN(entry, "waiters", 1);

	outside_release(&f);
	h_granted(c, 1, 2);
	entry = listed(t, "l-wait");
	EXPECT_LEN(entry, "holders", 1);
	check_broker(h_member(entry, "holders", 0), "exclusive");
	EXPECT_LEN(entry, "waiters", 0);
	h_drop(c, "l-wait");
	ck_assert_ptr_null(listed(t, "l-wait"));
}
END_TEST

START_TEST(test_list_all_reports_files_held_only_from_outside)
{
	struct h_conn		*t = h_connect();
	struct json_object	*entry;
	struct h_flock		 f;

	outside(&f, "-s", "l-only");
	ck_assert_ptr_null(entry_of(list(t, 0, NULL), "l-only"));
	ck_assert_ptr_null(listed(t, "l-only"));

	entry = entry_of(list(t, 1, NULL), "l-only");
	ck_assert_msg(entry != NULL, "list all misses l-only");
	EXPECT_LEN(entry, "holders", 1);
	check_external(h_member(entry, "holders", 0), f.pid, "shared");
	EXPECT_LEN(entry, "waiters", 0);

	/* Once it lets go the file is still there, but nobody holds it. */
	outside_release(&f);
	ck_assert_ptr_null(entry_of(list(t, 1, NULL), "l-only"));
}
END_TEST

/*
 * A process may give itself a name that is not UTF-8; list still sends
 * valid UTF-8, with '?' for the name's bytes past ASCII.
 */
START_TEST(test_outside_command_that_is_not_utf8_is_cleaned)
{
	struct h_conn		*t = h_connect();
	struct json_object	*entry;
	char			 path[PATH_MAX], c;
	int			 ready[2], fd;
	pid_t			 pid;

	snprintf(path, sizeof path, "%s/l-utf8", h_srv.lock_dir);
	ck_assert_int_eq(pipe(ready), 0);
	ck_assert_int_ne(pid = fork(), -1);
	if (pid == 0) {
		prctl(PR_SET_NAME, "\xff" "bad" "\xc0\xaf", 0, 0, 0);
		if ((fd = open(path, O_RDONLY | O_CREAT, 0644)) == -1 ||
		    flock(fd, LOCK_EX) == -1 || write(ready[1], "x", 1) != 1)
			_exit(1);
		pause();
		_exit(0);
	}
	close(ready[1]);
	ck_assert_int_eq(read(ready[0], &c, 1), 1);
	close(ready[0]);
	h_sleep(H_OUTSIDE_STALE_SECS);
	entry = entry_of(list(t, 1, "l-utf8"), "l-utf8");
	ck_assert_ptr_nonnull(entry);
	ck_assert(is_external(h_member(entry, "holders", 0)));
	ck_assert_int_eq(h_int(h_member(entry, "holders", 0), "pid"), pid);
	ck_assert_str_eq(h_str(h_member(entry, "holders", 0), "command"),
	    "?bad??");
	kill(pid, SIGKILL);
	waitpid(pid, NULL, 0);
}
END_TEST

START_TEST(test_list_all_with_name_reports_only_that_file)
{
	struct h_conn		*t = h_connect();
	struct json_object	*r, *entry;
	struct h_flock		 f1, f2;

	outside(&f1, "-x", "l-one");
	outside(&f2, "-x", "l-two");

	r = list(t, 1, "l-one");
	ck_assert_msg(h_len(r, "locks") == 1, "one entry expected: %s",
	    h_json(r));
	entry = entry_of(r, "l-one");
	ck_assert_ptr_nonnull(entry);
	EXPECT_LEN(entry, "holders", 1);
	check_external(h_member(entry, "holders", 0), f1.pid, "exclusive");
	EXPECT_LEN(entry, "waiters", 0);

	r = list(t, 1, "l-none");
	ck_assert_msg(h_len(r, "locks") == 0, "nothing expected: %s",
	    h_json(r));
	r = list(t, 0, "l-one");
	ck_assert_msg(h_len(r, "locks") == 0, "nothing expected: %s",
	    h_json(r));
	outside_release(&f1);
	outside_release(&f2);
	r = list(t, 1, "l-one");
	ck_assert_msg(h_len(r, "locks") == 0, "nothing expected: %s",
	    h_json(r));
}
END_TEST

START_TEST(test_daemons_own_flocks_are_never_external)
{
	struct h_conn		*a = h_connect(), *b = h_connect();
	struct h_conn		*t = h_connect();
	struct json_object	*r, *entry;
	struct h_flock		 f;

	/* A broker holder's flock is the daemon's, so it is no outsider. */
	h_take(a, "own-x", "exclusive");
	entry = listed(t, "own-x");
	EXPECT_LEN(entry, "holders", 1);
	ck_assert_int_eq(nexternal(entry), 0);
	r = list(t, 1, NULL);
	entry = entry_of(r, "own-x");
	ck_assert_ptr_nonnull(entry);
	EXPECT_LEN(entry, "holders", 1);
	ck_assert_int_eq(nexternal(entry), 0);
	ck_assert(!lists_external_pid(r, h_srv.pid));
	r = queue(b, "own-x", "exclusive", 1);
	EXPECT_LEN(r, "holders", 1);
	ck_assert_int_eq(nexternal(r), 0);
	h_drop(a, "own-x");
	h_granted(b, 1, 2);
	h_drop(b, "own-x");

	h_take(a, "own-s", "shared");
	h_take(b, "own-s", "shared");
	entry = listed(t, "own-s");
	EXPECT_LEN(entry, "holders", 2);
	ck_assert_int_eq(nexternal(entry), 0);
	h_drop(a, "own-s");
	h_drop(b, "own-s");

	/* A watch thread blocked in flock(2) is not a holder either. */
	outside(&f, "-x", "own-w");
	queue(a, "own-w", "exclusive", 2);
	entry = listed(t, "own-w");
	EXPECT_LEN(entry, "holders", 1);
	check_external(h_member(entry, "holders", 0), f.pid, "exclusive");
	ck_assert(!lists_external_pid(list(t, 1, NULL), h_srv.pid));

	/* And the flock it then takes is the client's grant. */
	outside_release(&f);
	h_granted(a, 2, 2);
	entry = listed(t, "own-w");
	EXPECT_LEN(entry, "holders", 1);
	check_broker(h_member(entry, "holders", 0), "exclusive");
	r = list(t, 1, NULL);
	ck_assert_int_eq(nexternal(entry_of(r, "own-w")), 0);
	ck_assert(!lists_external_pid(r, h_srv.pid));
	h_drop(a, "own-w");
}
END_TEST

/*
 * Start a process on cpu that holds nfiles flocks in dir (outside the lock
 * dir) and keeps dropping and retaking them all, so /proc/locks keeps
 * growing and shrinking as on a busy machine.  Returns once it holds them.
 */
static pid_t
churn_start(const char *dir, int cpu, int nfiles)
{
	char		 path[PATH_MAX], c = 'x';
	cpu_set_t	 set;
	pid_t		 parent = getpid(), pid;
	int		 ready[2], *fds, i;

	ck_assert_int_eq(pipe(ready), 0);
	fflush(NULL);
	pid = fork();
	ck_assert_msg(pid != -1, "fork: %s", strerror(errno));
	if (pid == 0) {
		if (prctl(PR_SET_PDEATHSIG, SIGKILL) == -1 ||
		    getppid() != parent || (fds = calloc((size_t)nfiles,
		    sizeof *fds)) == NULL)
			_exit(127);
		CPU_ZERO(&set);
		CPU_SET(cpu, &set);
		sched_setaffinity(0, sizeof set, &set);
		for (i = 0; i < nfiles; i++) {
			snprintf(path, sizeof path, "%s/c%d-%d", dir, cpu, i);
			fds[i] = open(path, O_RDONLY | O_CREAT, 0600);
			if (fds[i] == -1 || flock(fds[i], LOCK_EX) == -1)
				_exit(127);
		}
		if (write(ready[1], &c, 1) != 1)
			_exit(127);
		for (;;) {
			for (i = 0; i < nfiles; i++)
				flock(fds[i], LOCK_UN);
			for (i = 0; i < nfiles; i++)
				flock(fds[i], LOCK_EX);
		}
	}
	close(ready[1]);
	ck_assert_msg(read(ready[0], &c, 1) == 1, "the churner did not start");
	close(ready[0]);
	return pid;
}

/* Stop the churner. */
static void
churn_stop(pid_t pid)
{
	kill(pid, SIGKILL);
	waitpid(pid, NULL, 0);
}

START_TEST(test_outside_holder_listed_exactly_once_while_other_flocks_churn)
{
	enum { NLISTS = 300, NCHURNERS = 4 };
	struct h_conn		*c = h_connect(), *t = h_connect();
	struct json_object	*entry;
	struct h_flock		 f;
	cpu_set_t		 all, one;
	char			 dir[PATH_MAX];
	pid_t			 churner[NCHURNERS];
	int			 i, cpu, last = -1, n = 0;
	int			 twice = 0, missing = 0;

	/*
	 * The kernel keeps a list of flocks per CPU, adds to the head of the
	 * list of the CPU that takes the lock, and shows the lists in CPU
	 * order.  flock(1) runs on the last CPU, and churners on it and on
	 * CPUs before it, so locks come and go before the holder's line
	 * while the daemon reads, whichever CPU the daemon runs on.
	 */
	ck_assert_int_eq(sched_getaffinity(0, sizeof all, &all), 0);
	for (cpu = 0; cpu < CPU_SETSIZE; cpu++) {
		if (CPU_ISSET(cpu, &all))
			last = cpu;
	}
	CPU_ZERO(&one);
	CPU_SET(last, &one);
	ck_assert_int_eq(sched_setaffinity(0, sizeof one, &one), 0);
	outside(&f, "-x", "busy");
	ck_assert_int_eq(sched_setaffinity(0, sizeof all, &all), 0);
	queue(c, "busy", "exclusive", 1);
	snprintf(dir, sizeof dir, "%s/churn-%ld", h_srv.dir, (long)getpid());
	ck_assert_msg(mkdir(dir, 0700) == 0, "mkdir %s: %s", dir,
	    strerror(errno));
	churner[n++] = churn_start(dir, last, 150);
	for (cpu = 0; cpu < last && n < NCHURNERS; cpu++) {
		if (CPU_ISSET(cpu, &all))
			churner[n++] = churn_start(dir, cpu, 150);
	}

	/* /proc/locks is long and changing; every listing must be right. */
	for (i = 0; i < NLISTS; i++) {
		entry = listed(t, "busy");
		ck_assert_ptr_nonnull(entry);
		if (h_len(entry, "holders") > 1)
			twice++;
		else if (h_len(entry, "holders") == 0)
			missing++;
		else
			check_external(h_member(entry, "holders", 0), f.pid,
			    "exclusive");
	}
	for (i = 0; i < n; i++)
		churn_stop(churner[i]);
	fprintf(stderr, "one outside holder under churn: listed twice or more "
	    "%d times, missing %d times, in %d lists\n", twice, missing,
	    NLISTS);
	ck_assert_msg(twice == 0 && missing == 0, "of %d lists of one outside "
	    "holder, %d showed it more than once and %d not at all", NLISTS,
	    twice, missing);
	outside_release(&f);
	h_granted(c, 1, 2);
	h_drop(c, "busy");
}
END_TEST

/*
 * Threads and descriptors: each test runs a daemon of its own.
 */

START_TEST(test_timeout_on_outside_holder_comes_on_time_and_leaks_nothing)
{
	struct h_conn		*c;
	struct json_object	*r;
	struct counts		 base, n;
	struct h_flock		 f;
	double			 t0, elapsed;

	h_own_daemon_start();
	c = h_connect();
	base = counts_baseline(c);
	outside(&f, "-x", "timed");

	t0 = h_now();
	ck_assert_int_eq(h_send(c, "{\"op\":\"acquire\",\"id\":1,"
	    "\"name\":\"timed\",\"timeout\":0.3}"), 0);
	r = h_recv(c, h_slow(H_REPLY_SECS));
	EXPECT_BLOCKING(r);
	EXPECT_LEN(r, "holders", 1);
	check_external(h_member(r, "holders", 0), f.pid, "exclusive");
	n = counts_now();
	ck_assert_msg(n.tasks > base.tasks, "no watch thread: %d threads, "
	    "baseline %d", n.tasks, base.tasks);

	r = h_recv(c, h_slow(3));
	elapsed = h_now() - t0;
	EXPECT_ERROR(r, "timeout");
	EXPECT_ID(r, 1);
	fprintf(stderr, "timeout 0.3 on an outside holder: %.3f s\n",
	    elapsed);
	ck_assert_msg(elapsed >= 0.25 && elapsed < h_slow(2),
	    "timeout after %.3f s", elapsed);
	ck_assert_ptr_null(listed(c, "timed"));

	/* While the outsider still holds the file. */
	expect_counts_back(base, 2, "after a timeout");
	ck_assert(!flock_free("timed"));
	outside_release(&f);
	ck_assert(flock_free("timed"));
	h_own_daemon_stop();
}
END_TEST

START_TEST(test_cancel_interrupts_the_watch_while_the_outsider_holds)
{
	struct h_conn	*c;
	struct counts	 base, n;
	struct h_flock	 f;

	h_own_daemon_start();
	c = h_connect();
	base = counts_baseline(c);
	outside(&f, "-x", "cancel");
	queue(c, "cancel", "exclusive", 1);
	n = counts_now();
	ck_assert_msg(n.tasks > base.tasks, "no watch thread: %d threads, "
	    "baseline %d", n.tasks, base.tasks);

	cancel(c, "cancel", 1);
	expect_counts_back(base, 2, "after a cancel");
	ck_assert_msg(kill(f.pid, 0) == 0, "flock(1) is gone");
	ck_assert(!flock_free("cancel"));
	outside_release(&f);
	ck_assert(flock_free("cancel"));
	h_own_daemon_stop();
}
END_TEST

START_TEST(test_thousands_of_timed_out_and_vanished_waits_leak_nothing)
{
	enum { NNAMES = 4, NCONNS = 50, NROUNDS = 5 };
	struct h_conn		*c, *w[NCONNS];
	struct json_object	*r;
	struct counts		 base, n;
	struct h_flock		 f[NNAMES];
	char			 name[NNAMES][16];
	int			 i, k, round, finals;
	int			 timeouts = 0, vanished = 0;

	h_own_daemon_start();
	c = h_connect();
	base = counts_baseline(c);
	for (i = 0; i < NNAMES; i++) {
		snprintf(name[i], sizeof name[i], "many-%d", i);
		outside(&f[i], "-x", name[i]);
	}

	/* Waits that time out, every name pipelined on each connection. */
	for (k = 0; k < NCONNS; k++)
		w[k] = h_connect();
	for (round = 0; round < NROUNDS; round++) {
		for (k = 0; k < NCONNS; k++) {
			for (i = 0; i < NNAMES; i++)
				ck_assert_int_eq(h_send(w[k], "{\"op\":"
				    "\"acquire\",\"id\":%d,\"name\":\"%s\","
				    "\"timeout\":0.05}", i, name[i]), 0);
		}
		for (k = 0; k < NCONNS; k++) {
			for (finals = 0; finals < NNAMES; ) {
				r = h_recv(w[k], h_slow(H_REPLY_SECS));
				if (h_is_event(r, "blocking"))
					continue;
				EXPECT_ERROR(r, "timeout");
				finals++;
				timeouts++;
			}
		}
	}
	for (k = 0; k < NCONNS; k++)
		h_conn_close(w[k]);
	ck_assert_int_eq(timeouts, NROUNDS * NCONNS * NNAMES);

	/* Waits whose clients vanish. */
	for (round = 0; round < NROUNDS; round++) {
		for (k = 0; k < NCONNS; k++) {
			w[k] = h_connect();
			for (i = 0; i < NNAMES; i++)
				ck_assert_int_eq(h_send(w[k], "{\"op\":"
				    "\"acquire\",\"id\":%d,\"name\":\"%s\"}", i,
				    name[i]), 0);
		}
		for (k = 0; k < NCONNS; k++) {
			for (i = 0; i < NNAMES; i++) {
				r = h_recv(w[k], h_slow(H_REPLY_SECS));
				EXPECT_BLOCKING(r);
			}
		}
		/* One watch thread per name held from outside. */
		n = counts_now();
		ck_assert_msg(n.tasks >= base.tasks + NNAMES,
		    "%d threads while %d names are watched, baseline %d",
		    n.tasks, NNAMES, base.tasks);
		for (k = 0; k < NCONNS; k++)
			h_conn_close(w[k]);
		vanished += NCONNS * NNAMES;
	}
	ck_assert_int_eq(vanished, NROUNDS * NCONNS * NNAMES);

	expect_counts_back(base, 5, "after thousands of waits");
	for (i = 0; i < NNAMES; i++) {
		outside_release(&f[i]);
		ck_assert(flock_free(name[i]));
	}
	h_own_daemon_stop();
}
END_TEST

START_TEST(test_outsider_letting_go_as_waits_time_out_leaks_nothing)
{
	struct h_conn		*c, *w;
	struct json_object	*r;
	struct counts		 base;
	struct h_flock		 f;
	int			 i, grants = 0, timeouts = 0;

	h_own_daemon_start();
	c = h_connect();
	base = counts_baseline(c);
	w = h_connect();
	for (i = 0; i < 30; i++) {
		outside(&f, "-x", "race");
		ck_assert_int_eq(h_send(w, "{\"op\":\"acquire\",\"id\":%d,"
		    "\"name\":\"race\",\"timeout\":0.03}", i), 0);
		/* Let go from well before to just after the timeout. */
		h_sleep(0.005 * (i % 10));
		close(f.ctl);
		f.ctl = -1;
		while (h_is_event(r = h_recv(w, h_slow(H_REPLY_SECS)),
		    "blocking"))
			;
		EXPECT_ID(r, i);
		if (h_ok(r)) {
			grants++;
			h_drop(w, "race");
		} else {
			EXPECT_ERROR(r, "timeout");
			timeouts++;
		}
		outside_release(&f);
	}
	fprintf(stderr, "outsider letting go near a timeout: %d grants, "
	    "%d timeouts\n", grants, timeouts);
	h_conn_close(w);
	expect_counts_back(base, 2, "after racing timeouts");
	ck_assert(flock_free("race"));
	h_own_daemon_stop();
}
END_TEST

static Suite *
outside_suite(void)
{
	Suite	*s = suite_create("outside");
	TCase	*tc;

	tc = h_daemon_tcase("waiting", 60);
	tcase_add_test(tc,
	    test_outside_holder_in_blocking_event_and_grant_follows_its_exit);
	tcase_add_test(tc,
	    test_broker_waiters_on_outside_holder_granted_in_fifo_order);
	tcase_add_test(tc,
	    test_first_broker_waiter_wins_when_outsider_lets_go_then_fifo);
	tcase_add_test(tc,
	    test_cancelled_exclusive_head_lets_shared_join_outside_shared);
	tcase_add_test(tc, test_watch_follows_the_head_mode_after_a_cancel);
	suite_add_tcase(s, tc);

	tc = h_daemon_tcase("sharing", 60);
	tcase_add_test(tc,
	    test_broker_shared_holder_and_outside_shared_flock_coexist);
	tcase_add_test(tc,
	    test_outside_exclusive_flock_fails_while_the_broker_holds);
	suite_add_tcase(s, tc);

	tc = h_daemon_tcase("list", 60);
	tcase_add_test(tc,
	    test_lock_held_only_from_outside_is_listed_while_a_client_waits);
	tcase_add_test(tc, test_list_all_reports_files_held_only_from_outside);
	tcase_add_test(tc, test_list_all_with_name_reports_only_that_file);
	tcase_add_test(tc, test_outside_command_that_is_not_utf8_is_cleaned);
	tcase_add_test(tc, test_daemons_own_flocks_are_never_external);
	tcase_add_test(tc,
	    test_outside_holder_listed_exactly_once_while_other_flocks_churn);
	suite_add_tcase(s, tc);

	/* These start daemons of their own, to count threads and fds. */
	tc = h_tcase("leaks", 60);
	tcase_add_test(tc,
	    test_timeout_on_outside_holder_comes_on_time_and_leaks_nothing);
	tcase_add_test(tc,
	    test_cancel_interrupts_the_watch_while_the_outsider_holds);
	tcase_add_test(tc,
	    test_thousands_of_timed_out_and_vanished_waits_leak_nothing);
	tcase_add_test(tc,
	    test_outsider_letting_go_as_waits_time_out_leaks_nothing);
	suite_add_tcase(s, tc);
	return s;
}

/* The tests run forked: see harness.h. */
int
main(void)
{
	return h_run_suite(outside_suite());
}
