/*
 * The daemon's lifecycle: a real locksd started, stopped, signalled,
 * killed and restarted.  Tokens keep rising across restarts and crashes;
 * the default socket and lock dir; SIGTERM and SIGINT; a second daemon on
 * a live socket, a stale socket and a file that is no socket; the lock
 * dir it creates; and the bounds it is started with (descriptors,
 * --max-locks-per-client).
 *
 * Most tests start a daemon of their own inside the test; the harness
 * makes it die with the test's process.  The TCase "start" shares one
 * (h_srv), started in an unchecked fixture (harness.h says why).
 *
 * Time bounds are generous on purpose (CI machines are noisy), and
 * stretched further when $LOCKSD_WRAPPER (say, valgrind) slows the daemon.
 */

#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>

#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <check.h>

#include "harness.h"

START_TEST(test_tokens_increase_across_daemon_restarts)
{
	struct h_daemon	 d;
	int64_t		 last = 0, t;
	int		 i;

	memset(&d, 0, sizeof d);
	ck_assert_msg(h_daemon_start(&d) == 0, "%s", h_error());
	for (i = 0; i < 3; i++) {
		t = h_token_from(&d, "restart-x");
		ck_assert_int_gt(t, last);
		last = t;
	}
	for (i = 0; i < 3; i++) {
		ck_assert_msg(h_daemon_stop(&d) == 0, "%s", h_error());
		ck_assert_msg(h_daemon_restart(&d) == 0, "%s", h_error());
		t = h_token_from(&d, "restart-x");
		ck_assert_msg(t > last, "token %lld after restart, not above "
		    "%lld", (long long)t, (long long)last);
		ck_assert_int_lt(t, H_MAX_SAFE_INTEGER);
		last = t;
	}
	/* A crash too. */
	h_daemon_kill(&d);
	ck_assert_msg(h_daemon_restart(&d) == 0, "%s", h_error());
	t = h_token_from(&d, "restart-x");
	ck_assert_msg(t > last, "token %lld after kill -9, not above %lld",
	    (long long)t, (long long)last);
	ck_assert_msg(h_daemon_stop(&d) == 0, "%s", h_error());
}
END_TEST

/*
 * White-box: token.c keeps a reserved ceiling in <lock-dir>/.tokens so
 * that a clock set backwards cannot make a restart reuse tokens.  Faking
 * a ceiling far above the clock stands in for that clock step.
 */
START_TEST(test_restart_starts_above_the_reserved_token_ceiling)
{
	struct h_daemon	 d;
	char		 path[PATH_MAX];
	int64_t		 t1, t2, ceiling;
	FILE		*fp;

	memset(&d, 0, sizeof d);
	ck_assert_msg(h_daemon_start(&d) == 0, "%s", h_error());
	t1 = h_token_from(&d, "ceiling-x");
	ck_assert_msg(h_daemon_stop(&d) == 0, "%s", h_error());

	snprintf(path, sizeof path, "%s/.tokens", d.lock_dir);
	fp = fopen(path, "r");
	ck_assert_msg(fp != NULL, "no %s", path);
	ck_assert_int_eq(fscanf(fp, "%" SCNd64, &ceiling), 1);
	fclose(fp);
	ck_assert_int_gt(ceiling, t1);

	ceiling = t1 + 5000000000000LL;		/* 58 days ahead */
	fp = fopen(path, "w");
	ck_assert_ptr_nonnull(fp);
	fprintf(fp, "%" PRId64 "\n", ceiling);
	fclose(fp);
	ck_assert_msg(h_daemon_restart(&d) == 0, "%s", h_error());
	t2 = h_token_from(&d, "ceiling-x");
	ck_assert_msg(t2 > ceiling, "token %lld below the ceiling %lld",
	    (long long)t2, (long long)ceiling);
	ck_assert_int_lt(t2, H_MAX_SAFE_INTEGER);
	ck_assert_msg(h_daemon_stop(&d) == 0, "%s", h_error());
}
END_TEST

START_TEST(test_daemon_defaults_to_locks_socket_and_a_lock_dir_beside_it)
{
	struct h_daemon	 d;
	locks_conn	*c = NULL;
	char		 dir[128];

	snprintf(dir, sizeof dir, "%s/env-XXXXXX", h_run_dir());
	ck_assert_ptr_nonnull(mkdtemp(dir));
	memset(&d, 0, sizeof d);
	d.env_only = 1;
	ck_assert_msg(h_daemon_start_in(&d, dir) == 0, "%s", h_error());
	setenv("LOCKS_SOCKET", d.socket_path, 1);
	ck_assert_int_eq(locks_connect(NULL, "env", &c), LOCKS_OK);
	ck_assert_int_eq(locks_acquire(c, "env-x", NULL, NULL), LOCKS_OK);
	ck_assert_int_eq(h_file_mode(dir, "locks"), 0755);
	ck_assert_int_eq(h_file_mode(d.lock_dir, "env-x"), 0644);
	locks_close(c);
	ck_assert_msg(h_daemon_stop(&d) == 0, "%s", h_error());
}
END_TEST

START_TEST(test_sigterm_exits_zero_and_removes_socket)
{
	struct h_daemon	 d;
	struct h_conn	*h, *w;

	memset(&d, 0, sizeof d);
	ck_assert_msg(h_daemon_start(&d) == 0, "%s", h_error());
	h = h_connect_to(d.socket_path);
	w = h_connect_to(d.socket_path);
	h_take(h, "term-x", "exclusive");
	h_queue(w, "term-x", "exclusive", 1, "");
	ck_assert_msg(h_daemon_stop(&d) == 0, "%s", h_error());
	ck_assert_msg(h_recv_closed(h, 2), "%s", h_error());
	ck_assert_msg(h_recv_closed(w, 2), "%s", h_error());
	/* Its locks went with it; its lock files stay. */
	ck_assert_int_eq(h_file_mode(d.lock_dir, "term-x"), 0644);
	ck_assert_int_eq(h_system("flock -n '%s/term-x' true", d.lock_dir),
	    0);
}
END_TEST

START_TEST(test_sigint_exits_zero_and_removes_socket)
{
	struct h_daemon	 d;
	struct h_conn	*h;

	memset(&d, 0, sizeof d);
	ck_assert_msg(h_daemon_start(&d) == 0, "%s", h_error());
	h = h_connect_to(d.socket_path);
	h_take(h, "int-x", "exclusive");
	ck_assert_msg(h_daemon_signal_stop(&d, SIGINT) == 0, "%s",
	    h_error());
	ck_assert_msg(h_recv_closed(h, 2), "%s", h_error());
}
END_TEST

START_TEST(test_second_daemon_on_live_socket_refuses_to_start)
{
	struct h_daemon	 d, second;
	struct h_conn	*before, *after;
	struct stat	 sb;
	pid_t		 pid;
	int		 status;

	memset(&d, 0, sizeof d);
	ck_assert_msg(h_daemon_start(&d) == 0, "%s", h_error());
	before = h_connect_to(d.socket_path);
	h_take(before, "live-x", "exclusive");

	second = d;
	snprintf(second.lock_dir, sizeof second.lock_dir, "%s/locks2", d.dir);
	snprintf(second.log_path, sizeof second.log_path, "%s/second.log",
	    d.dir);
	pid = h_daemon_spawn(&second);
	ck_assert_int_gt(pid, 0);
	ck_assert_msg(h_wait_exit(pid, h_slow(5), &status) == 0, "%s",
	    h_error());
	ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) != 0,
	    "the second locksd did not fail: status %#x", status);

	/* The first one is untouched. */
	ck_assert_int_eq(lstat(d.socket_path, &sb), 0);
	EXPECT_OK(h_request(before, "{\"op\":\"ping\"}"));
	after = h_connect_to(d.socket_path);
	EXPECT_ERROR(h_request(after, "{\"op\":\"acquire\","
	    "\"name\":\"live-x\",\"timeout\":0}"), "timeout");
	h_conn_close(before);
	h_conn_close(after);
	ck_assert_msg(h_daemon_stop(&d) == 0, "%s", h_error());
}
END_TEST

START_TEST(test_stale_socket_file_is_removed_at_start)
{
	struct h_daemon		 d;
	struct sockaddr_un	 sun;
	struct h_conn		*c;
	char			 dir[128];
	int			 fd;

	snprintf(dir, sizeof dir, "%s/stale-XXXXXX", h_run_dir());
	ck_assert_ptr_nonnull(mkdtemp(dir));
	memset(&d, 0, sizeof d);
	ck_assert_int_eq(h_daemon_paths(&d, dir), 0);
	memset(&sun, 0, sizeof sun);
	sun.sun_family = AF_UNIX;
	memcpy(sun.sun_path, d.socket_path, sizeof sun.sun_path);
	/* A socket nobody listens on, as a crashed daemon leaves. */
	fd = socket(AF_UNIX, SOCK_STREAM, 0);
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(bind(fd, (struct sockaddr *)&sun, sizeof sun), 0);
	close(fd);

	ck_assert_msg(h_daemon_start_in(&d, dir) == 0, "%s", h_error());
	c = h_connect_to(d.socket_path);
	EXPECT_OK(h_request(c, "{\"op\":\"ping\"}"));
	h_conn_close(c);

	/* And after kill -9. */
	h_daemon_kill(&d);
	ck_assert_int_ge(h_file_mode(d.socket_path, NULL), 0);
	ck_assert_msg(h_daemon_restart(&d) == 0, "%s", h_error());
	c = h_connect_to(d.socket_path);
	EXPECT_OK(h_request(c, "{\"op\":\"ping\"}"));
	h_conn_close(c);
	ck_assert_msg(h_daemon_stop(&d) == 0, "%s", h_error());
}
END_TEST

START_TEST(test_file_that_is_not_a_socket_is_never_removed)
{
	struct h_daemon	 d;
	char		 dir[128];
	pid_t		 pid;
	int		 status;
	FILE		*fp;

	snprintf(dir, sizeof dir, "%s/notsock-XXXXXX", h_run_dir());
	ck_assert_ptr_nonnull(mkdtemp(dir));
	memset(&d, 0, sizeof d);
	ck_assert_int_eq(h_daemon_paths(&d, dir), 0);
	fp = fopen(d.socket_path, "w");
	ck_assert_ptr_nonnull(fp);
	fputs("precious\n", fp);
	fclose(fp);

	pid = h_daemon_spawn(&d);
	ck_assert_int_gt(pid, 0);
	ck_assert_msg(h_wait_exit(pid, h_slow(5), &status) == 0, "%s",
	    h_error());
	ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) != 0,
	    "locksd started over a regular file: status %#x", status);
	ck_assert_int_eq(h_system("grep -qx precious '%s'", d.socket_path), 0);
}
END_TEST

/*
 * What it makes as it starts, and the bounds it is started with.
 */

START_TEST(test_lock_dir_is_created_0755)
{
	ck_assert_msg(h_srv.pid > 0, "locksd did not start");
	/* The daemon runs with umask 077: it sets the mode itself. */
	ck_assert_int_eq(h_file_mode(h_srv.lock_dir, NULL), 0755);
}
END_TEST

START_TEST(test_limit_when_the_daemon_runs_out_of_descriptors)
{
	struct h_daemon		 d;
	struct h_conn		*c, *late;
	struct json_object	*r = NULL;
	char			 name[32];
	int			 i, n;

	memset(&d, 0, sizeof d);
	d.nofile = 64;
	ck_assert_msg(h_daemon_start(&d) == 0, "%s", h_error());
	c = h_connect_to(d.socket_path);
	for (n = 0; n < 64; n++) {
		snprintf(name, sizeof name, "fd-%d", n);
		r = h_request(c, "{\"op\":\"acquire\",\"id\":%d,"
		    "\"name\":\"%s\",\"timeout\":0}", n, name);
		if (!h_ok(r))
			break;
	}
	EXPECT_ERROR(r, "limit");
	EXPECT_ID(r, n);
	ck_assert_ptr_null(h_listed(c, name));

	/*
	 * A client that comes now is served once descriptors come back.
	 * Valgrind closes descriptors past its own reserve as accept returns
	 * them, so under a wrapper that part proves nothing.
	 */
	if (getenv("LOCKSD_WRAPPER") != NULL) {
		h_conn_close(c);
		ck_assert_msg(h_daemon_stop(&d) == 0, "%s", h_error());
		return;
	}
	late = h_connect_to(d.socket_path);
	ck_assert_int_eq(h_send(late, "{\"op\":\"ping\",\"id\":1}"), 0);
	for (i = 0; i < 8; i++) {
		snprintf(name, sizeof name, "fd-%d", i);
		h_drop(c, name);
	}
	r = h_recv(late, h_slow(5));
	EXPECT_OK(r);
	EXPECT_ID(r, 1);
	EXPECT_OK(h_request(c, "{\"op\":\"acquire\",\"name\":\"fd-new\","
	    "\"timeout\":0}"));
	h_conn_close(c);
	h_conn_close(late);
	ck_assert_msg(h_daemon_stop(&d) == 0, "%s", h_error());
}
END_TEST

START_TEST(test_limit_at_max_locks_per_client_counts_holds_and_waits)
{
	struct h_daemon		 d;
	struct h_conn		*c, *other;
	struct json_object	*r;

	memset(&d, 0, sizeof d);
	d.extra[0] = "--max-locks-per-client";
	d.extra[1] = "3";
	ck_assert_msg(h_daemon_start(&d) == 0, "%s", h_error());
	c = h_connect_to(d.socket_path);
	other = h_connect_to(d.socket_path);
	h_take(other, "max-busy", "exclusive");
	h_take(c, "max-1", "exclusive");
	h_take(c, "max-2", "shared");
	h_queue(c, "max-busy", "exclusive", 3, "");	/* a wait counts too */
	r = h_request(c, "{\"op\":\"acquire\",\"id\":4,"
	    "\"name\":\"max-4\"}");
	EXPECT_ERROR(r, "limit");
	EXPECT_ID(r, 4);
	ck_assert_ptr_null(h_listed(c, "max-4"));
	/* Another connection has a bound of its own. */
	h_take(other, "max-4", "exclusive");

	h_drop(c, "max-1");
	h_take(c, "max-5", "exclusive");
	EXPECT_ERROR(h_request(c, "{\"op\":\"acquire\",\"name\":\"max-6\"}"),
	    "limit");
	/* A cancelled wait frees its place. */
	ck_assert_int_eq(h_send(c, "{\"op\":\"release\",\"id\":7,"
	    "\"name\":\"max-busy\"}"), 0);
	EXPECT_ERROR(h_recv(c, h_slow(2)), "cancelled");
	EXPECT_OK(h_recv(c, h_slow(2)));
	h_take(c, "max-6", "exclusive");
	h_conn_close(c);
	h_conn_close(other);
	ck_assert_msg(h_daemon_stop(&d) == 0, "%s", h_error());
}
END_TEST

static Suite *
lifecycle_suite(void)
{
	Suite	*s = suite_create("lifecycle");
	TCase	*tc;

	/* These start daemons of their own. */
	tc = h_tcase("daemon", 60);
	tcase_add_test(tc, test_tokens_increase_across_daemon_restarts);
	tcase_add_test(tc,
	    test_restart_starts_above_the_reserved_token_ceiling);
	tcase_add_test(tc,
	    test_daemon_defaults_to_locks_socket_and_a_lock_dir_beside_it);
	tcase_add_test(tc, test_sigterm_exits_zero_and_removes_socket);
	tcase_add_test(tc, test_sigint_exits_zero_and_removes_socket);
	tcase_add_test(tc, test_second_daemon_on_live_socket_refuses_to_start);
	tcase_add_test(tc, test_stale_socket_file_is_removed_at_start);
	tcase_add_test(tc, test_file_that_is_not_a_socket_is_never_removed);
	tcase_add_test(tc, test_limit_when_the_daemon_runs_out_of_descriptors);
	tcase_add_test(tc,
	    test_limit_at_max_locks_per_client_counts_holds_and_waits);
	suite_add_tcase(s, tc);

	tc = h_daemon_tcase("start", 60);
	tcase_add_test(tc, test_lock_dir_is_created_0755);
	suite_add_tcase(s, tc);
	return s;
}

/* The tests run forked: see harness.h. */
int
main(void)
{
	return h_run_suite(lifecycle_suite());
}
