/*
 * Handing the daemon over without losing a lock: a reload (SIGHUP, an
 * exec in place) and a restart through the descriptor store (a test
 * double of systemd's: tests/fdstore.c).  Every test runs both ways
 * (a loop test: _i is 0 for the reload, 1 for the restart), each with a
 * daemon of its own.
 *
 * Time bounds are generous on purpose; what a test proves never hangs on
 * a tight one.
 */

#include <sys/file.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <check.h>

#include "fdstore.h"
#include "harness.h"

enum { BY_RELOAD, BY_RESTART };

static struct fdstore	 store;
static int		 handovers;	/* done so far, in this test */

/* Start this test's daemon; for a restart, under the store's double. */
static void
start(int how)
{
	char	 dir[128];

	handovers = 0;
	if (how == BY_RESTART) {
		snprintf(dir, sizeof dir, "%s/store-XXXXXX", h_run_dir());
		ck_assert_ptr_nonnull(mkdtemp(dir));
		ck_assert_msg(fdstore_open(&store, dir) == 0, "notify socket: "
		    "%s", strerror(errno));
	} else
		unsetenv("NOTIFY_SOCKET");
	h_own_daemon_start();
}

/* How many times the daemon's log says it restored a state. */
static int
restored_count(void)
{
	char	 buf[1 << 16];
	char	*p;
	int	 n = 0;

	if (h_slurp(h_srv.log_path, buf, sizeof buf) < 0)
		return 0;
	for (p = buf; (p = strstr(p, "locksd: restored ")) != NULL; p++)
		n++;
	return n;
}

/* Wait until the daemon's store double is empty again (FDSTOREREMOVE). */
static void
store_settles(void)
{
	double	 deadline = h_now() + h_slow(H_REPLY_SECS);

	while (fdstore_drain(&store), fdstore_count(&store, NULL) > 0) {
		ck_assert_msg(h_now() < deadline, "the restored daemon left "
		    "%zu descriptors in the store", fdstore_count(&store,
		    NULL));
		h_sleep(0.01);
	}
}

/*
 * Hand the daemon over one way, and wait until the new one restored,
 * leaving the store as it is.
 */
static void
hand_over_unsettled(int how)
{
	double	 deadline = h_now() + h_slow(2 * H_START_SECS);

	handovers++;
	if (how == BY_RESTART) {
		ck_assert_msg(fdstore_restart(&store, &h_srv) == 0,
		    "restart through the store failed: %s", store.error);
	} else
		ck_assert_int_eq(kill(h_srv.pid, SIGHUP), 0);
	while (restored_count() < handovers) {
		if (how == BY_RESTART)
			fdstore_drain(&store);
		if (h_now() > deadline) {
			h_daemon_dump_log(&h_srv);
			ck_abort_msg("no restore within the time");
		}
		h_sleep(0.01);
	}
}

/* Hand the daemon over, and wait until it took all from the store. */
static void
hand_over(int how)
{
	hand_over_unsettled(how);
	if (how == BY_RESTART)
		store_settles();
}

/* A token from a fresh connection's grant of name. */
static int64_t
token_of(struct json_object *grant)
{
	return h_int(grant, "token");
}

/* Whether flock -n on the lock file of name fails (someone holds it). */
static int
file_held(const char *name)
{
	return h_system("flock -n '%s/%s' true", h_srv.lock_dir, name) != 0;
}

START_TEST(test_held_locks_keep_their_tokens)
{
	struct h_conn		*x, *s1, *s2, *c;
	struct json_object	*l;
	int64_t			 tx, ts1, ts2, later;

	start(_i);
	x = h_connect();
	s1 = h_connect();
	s2 = h_connect();
	tx = token_of(h_take(x, "rl-x", "exclusive"));
	ts1 = token_of(h_take(s1, "rl-s", "shared"));
	ts2 = token_of(h_take(s2, "rl-s", "shared"));
	hand_over(_i);
	c = h_connect();
	l = h_listed(c, "rl-x");
	ck_assert_msg(l != NULL && token_of(h_member(l, "holders", 0)) == tx,
	    "rl-x lost its holder: %s", h_json(l));
	l = h_listed(c, "rl-s");
	EXPECT_LEN(l, "holders", 2);
	ck_assert_int_eq(token_of(h_member(l, "holders", 0)), ts1);
	ck_assert_int_eq(token_of(h_member(l, "holders", 1)), ts2);
	ck_assert_msg(file_held("rl-x") && file_held("rl-s"),
	    "a flock was dropped");
	/* The same connections go on: release, and tokens keep rising. */
	h_drop(x, "rl-x");
	h_drop(s1, "rl-s");
	later = token_of(h_take(c, "rl-x", "exclusive"));
	ck_assert_msg(later > tx && later > ts2, "token %lld not above %lld",
	    (long long)later, (long long)ts2);
	ck_assert_msg(file_held("rl-s"), "s2 still holds rl-s shared");
}
END_TEST

/*
 * Handed over twice: /proc/locks shows the first daemon's pid for the
 * flock, and it must still count as the daemon's own, never as a holder
 * outside the broker.
 */
START_TEST(test_own_flocks_are_no_outside_holders)
{
	struct h_conn		*x, *c;
	struct json_object	*l;

	start(_i);
	x = h_connect();
	h_take(x, "rl-own", "shared");
	hand_over(_i);
	hand_over(_i);
	c = h_connect();
	h_sleep(H_OUTSIDE_STALE_SECS);
	l = h_listed(c, "rl-own");
	EXPECT_LEN(l, "holders", 1);
	ck_assert_msg(!h_is(h_member(l, "holders", 0), "external",
	    json_type_boolean) || !json_object_get_boolean(h_get(h_member(l,
	    "holders", 0), "external")), "the daemon's own flock is listed as "
	    "an outsider's: %s", h_json(l));
}
END_TEST

/*
 * flock -n in a loop the whole time: not once may it get a file the
 * broker holds, before, during or after the handover.
 */
START_TEST(test_plain_flock_fails_throughout)
{
	struct h_conn	*x;
	char		 out[PATH_MAX], stop[PATH_MAX], buf[64];
	int		 got;

	start(_i);
	x = h_connect();
	h_take(x, "rl-flock", "exclusive");
	snprintf(out, sizeof out, "%s/flock.out", h_srv.dir);
	snprintf(stop, sizeof stop, "%s/flock.stop", h_srv.dir);
	ck_assert_int_eq(h_system("(n=0; while [ ! -e '%s' ]; do "
	    "flock -n '%s/rl-flock' true && echo got >> '%s'; n=$((n+1)); "
	    "done; echo tries $n >> '%s') >/dev/null 2>&1 & echo started",
	    stop, h_srv.lock_dir, out, out), 0);
	h_sleep(0.2);
	hand_over(_i);
	h_sleep(0.2);
	ck_assert_int_eq(h_system("touch '%s'", stop), 0);
	while ((got = h_slurp(out, buf, sizeof buf)) < 0 ||
	    strstr(buf, "tries") == NULL)
		h_sleep(0.05);
	ck_assert_msg(strstr(buf, "got") == NULL, "flock -n got the file: "
	    "%s", buf);
}
END_TEST

START_TEST(test_waiters_keep_fifo_order)
{
	struct h_conn	*h, *w1, *w2, *w3;
	int64_t		 t;

	start(_i);
	h = h_connect();
	w1 = h_connect();
	w2 = h_connect();
	w3 = h_connect();
	t = token_of(h_take(h, "rl-q", "exclusive"));
	h_queue(w1, "rl-q", "exclusive", 1, "first");
	h_queue(w2, "rl-q", "shared", 2, "second");
	h_queue(w3, "rl-q", "shared", 3, "third");
	hand_over(_i);
	h_drop(h, "rl-q");
	ck_assert_int_gt(token_of(h_granted(w1, 1, H_REPLY_SECS)), t);
	EXPECT_QUIET(w2, 0.2);
	EXPECT_QUIET(w3, 0.05);
	h_drop(w1, "rl-q");
	/* The two shared waiters go together, in their order. */
	h_granted(w2, 2, H_REPLY_SECS);
	h_granted(w3, 3, H_REPLY_SECS);
}
END_TEST

/*
 * Send an acquire of name (held by h) on w with id and the timer fields
 * given, wait 3 s, hand over, and return what comes on w: a timer of 6 s
 * kept comes about 6 s after the request; one begun anew would come at
 * least 3 s later.
 */
static struct json_object *
timer_across(int how, struct h_conn *h, struct h_conn *w, const char *name,
    int id, const char *fields)
{
	struct json_object	*r;
	double			 sent;

	h_take(h, name, "exclusive");
	sent = h_now();
	ck_assert_int_eq(h_send(w, "{\"op\":\"acquire\",\"id\":%d,\"name\":"
	    "\"%s\",%s}", id, name, fields), 0);
	h_sleep(3);
	hand_over(how);
	r = h_recv(w, 20);
	EXPECT_ID(r, id);
	ck_assert_msg(h_now() - sent < 8.5, "%s came %.1f s after the "
	    "request, not about 6", h_json(r), h_now() - sent);
	ck_assert_msg(h_now() - sent > 5.5, "%s came early", h_json(r));
	return r;
}

/* A timeout keeps counting from the request, not from the handover. */
START_TEST(test_timeouts_keep_counting)
{
	start(_i);
	EXPECT_ERROR(timer_across(_i, h_connect(), h_connect(), "rl-t", 9,
	    "\"timeout\":6,\"notify_after\":1000000000"), "timeout");
}
END_TEST

/* notify_after keeps counting too: the blocking event comes on time. */
START_TEST(test_notify_after_keeps_counting)
{
	struct h_conn	*h, *w;

	start(_i);
	h = h_connect();
	w = h_connect();
	EXPECT_BLOCKING(timer_across(_i, h, w, "rl-n", 6,
	    "\"notify_after\":6"));
	/* And the wait itself goes on: the grant comes on release. */
	h_drop(h, "rl-n");
	h_granted(w, 6, H_REPLY_SECS);
}
END_TEST

/* A request cut in half by the handover, and one sent in the gap. */
START_TEST(test_half_sent_line_completes_after)
{
	struct h_conn		*c;
	struct json_object	*r;
	const char		*half = "{\"op\":\"acquire\",\"id\":7,\"na";

	start(_i);
	c = h_connect();
	ck_assert_int_eq(h_send_raw(c, half, strlen(half)), 0);
	h_sleep(0.2);
	hand_over(_i);
	ck_assert_int_eq(h_send(c, "me\":\"rl-half\",\"timeout\":0}"), 0);
	r = h_granted(c, 7, H_REPLY_SECS);
	ck_assert_str_eq(h_str(r, "name"), "rl-half");
	/* Sent while the daemon is between images: answered afterwards. */
	if (_i == BY_RELOAD) {
		ck_assert_int_eq(kill(h_srv.pid, SIGHUP), 0);
		ck_assert_int_eq(h_send(c, "{\"op\":\"ping\",\"id\":8}"), 0);
		r = h_recv(c, h_slow(H_REPLY_SECS));
		EXPECT_OK(r);
		EXPECT_ID(r, 8);
	}
}
END_TEST

/* A lock blocked on a flock(1) outside the broker, granted after. */
START_TEST(test_blocked_on_outside_holder)
{
	struct h_flock	 f;
	struct h_conn	*w;
	char		 path[PATH_MAX];

	start(_i);
	snprintf(path, sizeof path, "%s/rl-out", h_srv.lock_dir);
	ck_assert_int_eq(h_system("touch '%s'", path), 0);
	ck_assert_msg(h_flock_spawn(&f, "-x", path) == 0, "%s", h_error());
	w = h_connect();
	h_queue(w, "rl-out", "exclusive", 4, "");
	hand_over(_i);
	EXPECT_QUIET(w, 0.3);
	ck_assert_msg(h_flock_release(&f) == 0, "%s", h_error());
	h_granted(w, 4, H_REPLY_SECS);
	ck_assert_msg(file_held("rl-out"), "the broker's grant holds no flock");
}
END_TEST

/* liblocks holders in other processes notice nothing. */
START_TEST(test_liblocks_clients_notice_nothing)
{
	struct h_holder	 a, b;
	locks_conn	*c;
	int64_t		 t;

	start(_i);
	ck_assert_msg(h_holder_spawn(&a, h_srv.socket_path, "rl-lib",
	    LOCKS_EXCLUSIVE, "liba", "") == 0, "%s", h_error());
	ck_assert_msg(h_holder_spawn(&b, h_srv.socket_path, "rl-lib2",
	    LOCKS_SHARED, "libb", "") == 0, "%s", h_error());
	hand_over(_i);
	ck_assert_int_eq(locks_connect(h_srv.socket_path, "t", &c), LOCKS_OK);
	ck_assert_int_eq(locks_acquire(c, "rl-lib", &(struct
	    locks_acquire_opts){ LOCKS_EXCLUSIVE, 0, 0, NULL, NULL, NULL,
	    LOCKS_LOCAL, NULL, 0 },
	    NULL), LOCKS_E_TIMEOUT);
	/* b was forked after a, so it has a's control pipe: b goes first. */
	ck_assert_msg(h_holder_release(&b) == 0, "%s", h_error());
	ck_assert_msg(h_holder_release(&a) == 0, "%s", h_error());
	ck_assert_int_eq(locks_acquire(c, "rl-lib", NULL, &t), LOCKS_OK);
	ck_assert_int_gt(t, a.token);
	locks_close(c);
}
END_TEST

/* locks run keeps running its command, and locks run -w its wait. */
START_TEST(test_locks_run_keeps_running)
{
	char	 out[PATH_MAX], buf[256];
	double	 deadline;

	start(_i);
	snprintf(out, sizeof out, "%s/run.out", h_srv.dir);
	ck_assert_int_eq(h_system("'%s' --socket '%s' run rl-run -- sh -c "
	    "'echo held $LOCKS_TOKEN >> %s; sleep 2; echo done >> %s' "
	    ">/dev/null 2>&1 & sleep 0.5; '%s' --socket '%s' run -w 30 "
	    "rl-run -- sh -c 'echo second >> %s' >/dev/null 2>&1 &",
	    LOCKS_CLI_PATH, h_srv.socket_path, out, out, LOCKS_CLI_PATH,
	    h_srv.socket_path, out), 0);
	h_sleep(1);
	hand_over(_i);
	deadline = h_now() + h_slow(30);
	while (h_slurp(out, buf, sizeof buf) < 0 ||
	    strstr(buf, "second") == NULL) {
		ck_assert_msg(h_now() < deadline, "never ran: %s", buf);
		h_sleep(0.1);
	}
	ck_assert_msg(strstr(buf, "held") < strstr(buf, "done") &&
	    strstr(buf, "done") < strstr(buf, "second"), "out of order: %s",
	    buf);
}
END_TEST

/* Many connections at once, each holding a lock. */
START_TEST(test_a_thousand_connections)
{
	struct h_conn	*c[1000], *probe;
	struct rlimit	 rl;
	char		 name[32];
	int		 i;

	ck_assert_int_eq(getrlimit(RLIMIT_NOFILE, &rl), 0);
	rl.rlim_cur = rl.rlim_max;
	ck_assert_int_eq(setrlimit(RLIMIT_NOFILE, &rl), 0);
	ck_assert_msg(rl.rlim_cur > 1100, "RLIMIT_NOFILE %ld is too low",
	    (long)rl.rlim_cur);
	start(_i);
	for (i = 0; i < 1000; i++) {
		c[i] = h_connect();
		snprintf(name, sizeof name, "rl-k%d", i);
		h_take(c[i], name, "exclusive");
	}
	hand_over(_i);
	probe = h_connect();
	for (i = 0; i < 1000; i += 97) {
		snprintf(name, sizeof name, "rl-k%d", i);
		ck_assert_msg(h_listed(probe, name) != NULL, "%s lost", name);
		h_drop(c[i], name);
	}
}
END_TEST

/*
 * Two names hard-linked to one file: two locks on one identity, which a
 * restart cannot tell apart in a batch, so they go under names of their
 * own.
 */
START_TEST(test_hard_linked_lock_files)
{
	struct h_conn	*a, *b, *c;
	int64_t		 ta, tb;

	start(_i);
	ck_assert_int_eq(h_system("mkdir -p '%s' && touch '%s/rl-ln1' && "
	    "ln '%s/rl-ln1' '%s/rl-ln2'", h_srv.lock_dir, h_srv.lock_dir,
	    h_srv.lock_dir, h_srv.lock_dir), 0);
	a = h_connect();
	b = h_connect();
	ta = token_of(h_take(a, "rl-ln1", "shared"));
	tb = token_of(h_take(b, "rl-ln2", "shared"));
	hand_over(_i);
	c = h_connect();
	ck_assert_int_eq(token_of(h_member(h_listed(c, "rl-ln1"), "holders",
	    0)), ta);
	ck_assert_int_eq(token_of(h_member(h_listed(c, "rl-ln2"), "holders",
	    0)), tb);
	h_drop(a, "rl-ln1");
	ck_assert_msg(file_held("rl-ln2"), "rl-ln2's flock was dropped");
}
END_TEST

/* kill -9 after a handover: every lock goes, every client learns it. */
START_TEST(test_kill_after_handover_releases_everything)
{
	struct h_conn	*x, *w;

	start(_i);
	x = h_connect();
	w = h_connect();
	h_take(x, "rl-kill", "exclusive");
	h_queue(w, "rl-kill", "exclusive", 5, "");
	hand_over(_i);
	h_daemon_kill(&h_srv);
	ck_assert_msg(h_recv_closed(x, h_slow(2)), "%s", h_error());
	ck_assert_msg(h_recv_closed(w, h_slow(2)), "%s", h_error());
	ck_assert_msg(!file_held("rl-kill"), "the flock outlived the daemon");
}
END_TEST

/* A state that is not one: the daemon still starts and serves. */
START_TEST(test_unreadable_state_is_survived)
{
	char	 path[PATH_MAX], env[32], buf[8192];
	int	 fd;

	snprintf(path, sizeof path, "%s/garbage-XXXXXX", h_run_dir());
	ck_assert_int_ge(fd = mkstemp(path), 0);
	ck_assert_int_eq(write(fd, "LOCKSDST\377\377\377\377junkjunk", 20), 20);
	lseek(fd, 0, SEEK_SET);
	snprintf(env, sizeof env, "%d", fd);
	setenv("LOCKSD_STATE_FD", env, 1);
	h_own_daemon_start();
	unsetenv("LOCKSD_STATE_FD");
	close(fd);
	h_take(h_connect(), "rl-garbage", "exclusive");
	ck_assert_int_ge(h_slurp(h_srv.log_path, buf, sizeof buf), 0);
	ck_assert_msg(strstr(buf, "restore") != NULL, "no word of the state: "
	    "%s", buf);
}
END_TEST

/* The binary gone: the reload fails and the daemon carries on. */
START_TEST(test_failed_reload_keeps_the_old_daemon)
{
	struct h_daemon	 d;
	struct h_conn	*x;
	char		 copy[PATH_MAX], buf[8192], dir[128];
	pid_t		 pid;

	memset(&d, 0, sizeof d);
	snprintf(dir, sizeof dir, "%s/fail-XXXXXX", h_run_dir());
	ck_assert_ptr_nonnull(mkdtemp(dir));
	ck_assert_int_eq(h_daemon_paths(&d, dir), 0);
	snprintf(copy, sizeof copy, "%s/locksd-copy", d.dir);
	ck_assert_int_eq(h_system("cp '%s' '%s'", LOCKSD_PATH, copy), 0);
	if ((pid = fork()) == 0) {
		int fd = open(d.log_path, O_WRONLY | O_CREAT | O_APPEND, 0600);

		dup2(fd, 2);
		execl(copy, copy, "--socket", d.socket_path, "--lock-dir",
		    d.lock_dir, (char *)NULL);
		_exit(127);
	}
	ck_assert_msg(h_daemon_wait_ready(&d, pid) == 0, "%s", h_error());
	x = h_connect_to(d.socket_path);
	h_take(x, "rl-fail", "exclusive");
	unlink(copy);
	kill(d.pid, SIGHUP);
	h_sleep(0.5);
	ck_assert_int_eq(h_slurp(d.log_path, buf, sizeof buf) >= 0, 1);
	ck_assert_msg(strstr(buf, "reload failed") != NULL, "%s", buf);
	ck_assert_int_eq(kill(d.pid, 0), 0);
	EXPECT_ERROR(h_request(h_connect_to(d.socket_path), "{\"op\":"
	    "\"acquire\",\"id\":1,\"name\":\"rl-fail\",\"timeout\":0}"),
	    "timeout");
	h_drop(x, "rl-fail");
	ck_assert_msg(h_daemon_stop(&d) == 0, "%s", h_error());
}
END_TEST

/*
 * More descriptors than the store takes ($FDSTORE, which the unit sets
 * to FileDescriptorStoreMax=): nothing is handed over, all is released.
 */
START_TEST(test_store_too_small_releases_everything)
{
	struct h_conn	*x;
	char		 buf[8192];

	setenv("FDSTORE", "3", 1);
	start(BY_RESTART);
	unsetenv("FDSTORE");
	x = h_connect();
	h_take(x, "rl-small", "exclusive");
	kill(h_srv.pid, SIGTERM);
	ck_assert_msg(h_recv_closed(x, h_slow(H_REPLY_SECS)), "%s",
	    h_error());
	ck_assert_int_eq(h_wait_exit(h_srv.pid, h_slow(H_START_SECS), NULL),
	    0);
	h_srv.pid = 0;
	fdstore_drain(&store);
	ck_assert_uint_eq(fdstore_count(&store, NULL), 0);
	ck_assert_msg(!file_held("rl-small"), "the lock outlived the daemon");
	ck_assert_int_ge(h_slurp(h_srv.log_path, buf, sizeof buf), 0);
	ck_assert_msg(strstr(buf, "releasing everything") != NULL, "%s", buf);
}
END_TEST

/* The store's double calls this between the old exit and the new start. */
static void
close_conn_between(struct fdstore *fs, void *arg)
{
	(void)fs;
	h_conn_close(arg);
}

/*
 * A client gone in the gap: systemd drops its hung-up socket from the
 * store, so its session comes back without one; its lock goes free, and
 * the next waiter gets it.
 */
START_TEST(test_client_gone_mid_restart)
{
	struct h_conn	*x, *w;
	int64_t		 t;

	start(BY_RESTART);
	x = h_connect();
	w = h_connect();
	t = token_of(h_take(x, "rl-gone", "exclusive"));
	h_queue(w, "rl-gone", "exclusive", 7, "next");
	store.between = close_conn_between;
	store.between_arg = x;
	hand_over(BY_RESTART);
	store.between = NULL;
	ck_assert_uint_ge(store.hung_up, 1);
	ck_assert_int_gt(token_of(h_granted(w, 7, H_REPLY_SECS)), t);
	ck_assert_msg(file_held("rl-gone"), "the waiter's flock is missing");
}
END_TEST

/*
 * The state, once read, is emptied for systemd's copy too: a crash
 * before the new instance takes it out of the store must not bring back
 * holders it has released since.
 */
START_TEST(test_state_is_emptied_once_read)
{
	struct stat	 sb;

	start(BY_RESTART);
	h_take(h_connect(), "rl-once", "exclusive");
	hand_over(BY_RESTART);
	ck_assert_int_ge(store.state_copy, 0);
	ck_assert_int_eq(fstat(store.state_copy, &sb), 0);
	ck_assert_int_eq(sb.st_size, 0);
}
END_TEST

/* Drop from the store every descriptor of the file arg names, but ours. */
static void
drop_file_between(struct fdstore *fs, void *arg)
{
	struct stat	 want, sb;
	size_t		 i = 0;

	ck_assert_int_eq(stat(arg, &want), 0);
	while (i < fs->n) {
		if (strncmp(fs->names[i], "~=", 2) != 0 &&
		    fstat(fs->fds[i], &sb) == 0 && sb.st_dev == want.st_dev &&
		    sb.st_ino == want.st_ino)
			fdstore_drop(fs, i);
		else
			i++;
	}
}

/*
 * A waiter in the descriptor form whose own descriptor did not come
 * back: granting it without would flock another description, so its
 * connection is closed, as a crash would, and the holder keeps its lock.
 */
START_TEST(test_lost_handoff_descriptor_closes_its_connection)
{
	struct h_conn		*x, *w;
	struct json_object	*r;
	char			 path[PATH_MAX], line[PATH_MAX + 128];
	int			 fds[2];

	start(BY_RESTART);
	snprintf(path, sizeof path, "%s/rl-handoff.lock", h_run_dir());
	x = h_connect();
	w = h_connect();
	ck_assert_int_ge(fds[0] = open(path, O_RDONLY | O_CREAT | O_CLOEXEC,
	    0644), 0);
	snprintf(line, sizeof line, "{\"id\":1,\"op\":\"acquire\",\"name\":"
	    "\"%s\"}\n", path);
	h_send_with_fds(x, line, fds, 1);
	EXPECT_OK(h_recv(x, H_REPLY_SECS));
	close(fds[0]);
	ck_assert_int_ge(fds[0] = open(path, O_RDONLY | O_CLOEXEC), 0);
	ck_assert_int_ge(fds[1] = open(path, O_RDONLY | O_CLOEXEC), 0);
	snprintf(line, sizeof line, "{\"id\":2,\"op\":\"acquire\",\"name\":"
	    "\"%s\",\"handoff\":true}\n", path);
	h_send_with_fds(w, line, fds, 2);
	r = h_recv(w, H_REPLY_SECS);
	EXPECT_BLOCKING(r);
	close(fds[1]);
	store.between = drop_file_between;
	store.between_arg = path;
	hand_over(BY_RESTART);
	store.between = NULL;
	ck_assert_msg(h_recv_closed(w, h_slow(H_REPLY_SECS)), "the waiter "
	    "without its descriptor was kept: %s", h_error());
	EXPECT_OK(h_request(x, "{\"op\":\"release\",\"name\":\"%s\"}", path));
	ck_assert_int_eq(flock(fds[0], LOCK_EX | LOCK_NB), 0);
	close(fds[0]);
}
END_TEST

/*
 * A descriptor in the store that is neither ours nor a listening socket
 * (another program's, say) is closed with a word in the log; the start
 * goes on, rather than failing every time systemd tries again.
 */
START_TEST(test_stray_descriptor_in_the_store_is_closed)
{
	char	 buf[1 << 16];

	start(BY_RESTART);
	h_take(h_connect(), "rl-stray", "exclusive");
	fdstore_add(&store, open("/dev/null", O_RDONLY | O_CLOEXEC), "stray");
	hand_over_unsettled(BY_RESTART);	/* the stray is not its to remove */
	ck_assert_msg(file_held("rl-stray"), "the lock was lost");
	ck_assert_int_ge(h_slurp(h_srv.log_path, buf, sizeof buf), 0);
	ck_assert_msg(strstr(buf, "(stray) is not a listening") != NULL,
	    "%s", buf);
}
END_TEST

/* Every descriptor a handover kept is close-on-exec again after it. */
START_TEST(test_kept_descriptors_are_close_on_exec)
{
	char		 dir[64], path[PATH_MAX], buf[512], *flags_line;
	struct dirent	*de;
	DIR		*d;
	unsigned	 flags;
	int		 fd, n = 0;

	start(_i);
	h_take(h_connect(), "rl-cloexec", "exclusive");
	hand_over(_i);
	snprintf(dir, sizeof dir, "/proc/%ld/fdinfo", (long)h_srv.pid);
	ck_assert_ptr_nonnull(d = opendir(dir));
	while ((de = readdir(d)) != NULL) {
		/* valgrind keeps its own descriptors high, at 1000 and up. */
		if ((fd = atoi(de->d_name)) < 3 || fd >= 1000)
			continue;
		snprintf(path, sizeof path, "%s/%s", dir, de->d_name);
		if (h_slurp(path, buf, sizeof buf) < 0 ||
		    (flags_line = strstr(buf, "flags:")) == NULL ||
		    sscanf(flags_line, "flags: %o", &flags) != 1)
			continue;
		ck_assert_msg(flags & O_CLOEXEC, "fd %d is not close-on-exec "
		    "after the handover", fd);
		n++;
	}
	closedir(d);
	ck_assert_int_ge(n, 3);
}
END_TEST

static Suite *
reload_suite(void)
{
	Suite	*s = suite_create("reload");
	TCase	*tc;

	tc = h_tcase("handover", 120);
	tcase_add_loop_test(tc, test_held_locks_keep_their_tokens, 0, 2);
	tcase_add_loop_test(tc, test_plain_flock_fails_throughout, 0, 2);
	tcase_add_loop_test(tc, test_own_flocks_are_no_outside_holders, 0, 2);
	tcase_add_loop_test(tc, test_waiters_keep_fifo_order, 0, 2);
	tcase_add_loop_test(tc, test_timeouts_keep_counting, 0, 2);
	tcase_add_loop_test(tc, test_notify_after_keeps_counting, 0, 2);
	tcase_add_loop_test(tc, test_half_sent_line_completes_after, 0, 2);
	tcase_add_loop_test(tc, test_blocked_on_outside_holder, 0, 2);
	tcase_add_loop_test(tc, test_liblocks_clients_notice_nothing, 0, 2);
	tcase_add_loop_test(tc, test_locks_run_keeps_running, 0, 2);
	tcase_add_loop_test(tc, test_a_thousand_connections, 0, 2);
	tcase_add_loop_test(tc, test_hard_linked_lock_files, 0, 2);
	tcase_add_loop_test(tc, test_kill_after_handover_releases_everything,
	    0, 2);
	tcase_add_loop_test(tc, test_kept_descriptors_are_close_on_exec, 0,
	    2);
	tcase_add_test(tc, test_client_gone_mid_restart);
	tcase_add_test(tc, test_state_is_emptied_once_read);
	tcase_add_test(tc, test_lost_handoff_descriptor_closes_its_connection);
	tcase_add_test(tc, test_stray_descriptor_in_the_store_is_closed);
	tcase_add_test(tc, test_store_too_small_releases_everything);
	tcase_add_test(tc, test_unreadable_state_is_survived);
	tcase_add_test(tc, test_failed_reload_keeps_the_old_daemon);
	suite_add_tcase(s, tc);
	return s;
}

/* The tests run forked: see harness.h. */
int
main(void)
{
	return h_run_suite(reload_suite());
}
