/*
 * Which socket a client finds without $LOCKS_SOCKET (README, "Which
 * socket"): a user other than root takes the system broker when one
 * answers, else the per-user one, and when none answers is told every
 * path tried and how to start a broker.  The system socket is trusted when
 * root or the owner of its directory serves it.
 *
 * The clients run as nobody, forked from a test that runs as root.  The
 * system socket lives under the run's directory, never in the real /run:
 * $LOCKS_SYSTEM_SOCKET, which liblocks documents for this, moves it.
 */

#include <sys/stat.h>

#include <errno.h>
#include <grp.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <check.h>

#include "harness.h"

#define NOBODY		65534	/* the client's uid, and its gid */
#define OTHER_UID	4244	/* a uid (and gid) no account has */

/* What a client as nobody saw of locks_connect(NULL, ...). */
struct client_report {
	int	 started;	/* it became nobody */
	int	 error;		/* locks_connect's */
	char	 path[PATH_MAX];	/* the socket it reached */
	char	 msg[1024];	/* locks_last_message after a failure */
};

/* Where one test points the two default sockets. */
struct sockets {
	char	 xdg[128];	/* the client's $XDG_RUNTIME_DIR */
	char	 user_dir[160];	/* <xdg>/locksd, the per-user broker's */
	char	 user[192];	/* its socket */
	char	 sys_dir[128];	/* the system broker's directory */
	char	 sys[160];	/* its socket, $LOCKS_SYSTEM_SOCKET */
};

/* Whether the test can run a client as nobody; say so when it cannot. */
static int
can_switch_users(const char *what)
{
	if (geteuid() != 0) {
		fprintf(stderr, "skipped (%s): only root can run a client as "
		    "another user\n", what);
		return 0;
	}
	return 1;
}

/* A fresh directory under the run's, owned by uid, with mode. */
static void
make_dir(char *dir, size_t size, const char *tmpl, uid_t uid, mode_t mode)
{
	ck_assert_int_lt(snprintf(dir, size, "%s/%s", h_run_dir(), tmpl),
	    (int)size);
	ck_assert_msg(mkdtemp(dir) != NULL, "mkdtemp %s: %s", dir,
	    strerror(errno));
	ck_assert_int_eq(chown(dir, uid, uid), 0);
	ck_assert_int_eq(chmod(dir, mode), 0);
}

/*
 * Lay out both sockets for a test: the system one in a directory of root's
 * that no broker listens in yet, the per-user one under nobody's fresh
 * $XDG_RUNTIME_DIR.
 */
static void
sockets_init(struct sockets *so)
{
	memset(so, 0, sizeof *so);
	make_dir(so->xdg, sizeof so->xdg, "x-XXXXXX", NOBODY, 0700);
	snprintf(so->user_dir, sizeof so->user_dir, "%s/locksd", so->xdg);
	snprintf(so->user, sizeof so->user, "%s/locksd.sock", so->user_dir);
	make_dir(so->sys_dir, sizeof so->sys_dir, "sys-XXXXXX", 0, 0755);
	snprintf(so->sys, sizeof so->sys, "%s/locksd.sock", so->sys_dir);
}

/* Start d as uid in dir, as h_daemon_start_as does, or fail the test. */
static void
start_in(struct h_daemon *d, uid_t uid, const char *dir, mode_t mode)
{
	ck_assert_msg(h_daemon_start_as(d, uid, dir, mode) == 0, "%s",
	    h_error());
}

/* The system broker, as root, in the test's system directory. */
static void
start_system(struct h_daemon *d, const struct sockets *so)
{
	start_in(d, 0, so->sys_dir, 0755);
	ck_assert_str_eq(d->socket_path, so->sys);
}

/* nobody's own broker on its per-user socket. */
static void
start_user(struct h_daemon *d, const struct sockets *so)
{
	start_in(d, NOBODY, so->user_dir, 0700);
	ck_assert_str_eq(d->socket_path, so->user);
}

static void
stop(struct h_daemon *d)
{
	ck_assert_msg(h_daemon_stop(d) == 0, "%s", h_error());
}

/* Point a process's default sockets at so's, without $LOCKS_SOCKET. */
static int
use_sockets(const struct sockets *so)
{
	return unsetenv("LOCKS_SOCKET") == -1 ||
	    setenv("LOCKS_SYSTEM_SOCKET", so->sys, 1) == -1 ||
	    setenv("XDG_RUNTIME_DIR", so->xdg, 1) == -1 ? -1 : 0;
}

/* In the forked client: become nobody, connect by default, report. */
static void
client_main(int report_fd, const void *arg)
{
	const struct sockets	*so = arg;
	struct client_report	 rep;
	locks_conn		*conn = NULL;

	memset(&rep, 0, sizeof rep);
	if (use_sockets(so) == -1 || setgroups(0, NULL) == -1 ||
	    setgid(NOBODY) == -1 || setuid(NOBODY) == -1) {
		snprintf(rep.msg, sizeof rep.msg, "cannot become nobody: %s",
		    strerror(errno));
		goto out;
	}
	rep.started = geteuid() == NOBODY;
	rep.error = locks_connect(NULL, "discovery", &conn);
	if (rep.error == LOCKS_OK) {
		snprintf(rep.path, sizeof rep.path, "%s",
		    locks_socket_path(conn));
		rep.error = locks_ping(conn);
	}
	if (rep.error != LOCKS_OK)
		snprintf(rep.msg, sizeof rep.msg, "%s",
		    locks_last_message(conn));
out:
	if (write(report_fd, &rep, sizeof rep) != sizeof rep)
		_exit(2);
	locks_close(conn);
	_exit(0);
}

/* Run a liblocks client as nobody against so's sockets; its report. */
static void
client_as_nobody(const struct sockets *so, struct client_report *ret_rep)
{
	ck_assert_msg(h_spawn_report(client_main, so, ret_rep,
	    sizeof *ret_rep) != -1, "the client as nobody: %s", h_error());
	ck_assert_msg(ret_rep->started, "%s", ret_rep->msg);
}

/* The client reached the socket at want. */
static void
expect_reached(const struct client_report *rep, const char *want)
{
	ck_assert_msg(rep->error == LOCKS_OK, "expected to reach %s, got %s: "
	    "%s", want, locks_error_code(rep->error), rep->msg);
	ck_assert_str_eq(rep->path, want);
}

/* The client failed with error, and its message holds want. */
static void
expect_failed(const struct client_report *rep, int error, const char *want)
{
	ck_assert_msg(rep->error == error, "expected %s, got %s (%s)",
	    locks_error_code(error), locks_error_code(rep->error), rep->msg);
	ck_assert_msg(strstr(rep->msg, want) != NULL,
	    "expected \"%s\" in the message \"%s\"", want, rep->msg);
}

/* Run the CLI as nobody with so's sockets; its status, stderr in err. */
static int
cli_as_nobody(const struct sockets *so, const char *args, char *out,
    size_t size)
{
	char	 path[256];
	int	 status;

	snprintf(path, sizeof path, "%s/cli-output", so->sys_dir);
	status = h_system("env -u LOCKS_SOCKET LOCKS_SYSTEM_SOCKET=%s "
	    "XDG_RUNTIME_DIR=%s setpriv --reuid=%d --regid=%d "
	    "--clear-groups %s %s >%s 2>&1", so->sys, so->xdg, NOBODY, NOBODY,
	    LOCKS_CLI_PATH, args, path);
	ck_assert_msg(h_slurp(path, out, size) == 0, "%s", h_error());
	unlink(path);
	return status;
}

/* `locks status` as nobody exits 0 and names the socket at want. */
static void
expect_cli_reached(const struct sockets *so, const char *want)
{
	char	 out[4096], line[256];
	int	 status;

	status = cli_as_nobody(so, "status", out, sizeof out);
	ck_assert_msg(status == 0, "locks status exited %d: %s", status, out);
	snprintf(line, sizeof line, "socket: %s\n", want);
	ck_assert_msg(strstr(out, line) != NULL, "expected \"%s\" in \"%s\"",
	    line, out);
}

START_TEST(test_nonroot_client_takes_the_system_broker_when_it_answers)
{
	struct sockets		 so;
	struct h_daemon		 sys, user;
	struct client_report	 rep;

	if (!can_switch_users("the system broker for a user"))
		return;
	sockets_init(&so);
	start_system(&sys, &so);
	start_user(&user, &so);
	client_as_nobody(&so, &rep);
	expect_reached(&rep, so.sys);

	/* The CLI goes through liblocks, so it finds the same one. */
	expect_cli_reached(&so, so.sys);
	stop(&user);
	stop(&sys);
}
END_TEST

START_TEST(test_nonroot_client_falls_back_to_its_own_broker)
{
	struct sockets		 so;
	struct h_daemon		 user;
	struct client_report	 rep;

	if (!can_switch_users("the per-user broker when no system one"))
		return;
	sockets_init(&so);
	start_user(&user, &so);
	client_as_nobody(&so, &rep);
	expect_reached(&rep, so.user);
	expect_cli_reached(&so, so.user);
	stop(&user);
}
END_TEST

/*
 * A system socket that is there but does not answer is a system broker
 * that is down: passing over to the per-user one would let two jobs in
 * under one name, so the client says so instead.
 */
START_TEST(test_a_dead_system_broker_is_an_error_not_passed_over)
{
	struct sockets		 so;
	struct h_daemon		 sys, user;
	struct client_report	 rep;
	struct stat		 sb;
	char			 out[4096], want[1024];
	int			 status;

	if (!can_switch_users("a stale system socket"))
		return;
	sockets_init(&so);
	start_system(&sys, &so);
	/* SIGKILL leaves the socket file, with nobody listening on it. */
	h_daemon_kill(&sys);
	ck_assert_int_eq(lstat(so.sys, &sb), 0);
	start_user(&user, &so);
	client_as_nobody(&so, &rep);
	snprintf(want, sizeof want, "cannot connect to the system broker at "
	    "%s: Connection refused; it is there but does not answer",
	    so.sys);
	expect_failed(&rep, LOCKS_E_CONNECT, want);

	/* The CLI names the system socket, not the per-user one. */
	status = cli_as_nobody(&so, "status", out, sizeof out);
	ck_assert_msg(strstr(out, want) != NULL && strncmp(out, "locks: "
	    "cannot connect to the system broker", 36) == 0, "%s", out);
	ck_assert_int_eq(status, 69);
	stop(&user);
}
END_TEST

START_TEST(test_no_broker_names_every_path_tried_and_how_to_start_one)
{
	struct sockets		 so;
	struct client_report	 rep;
	char			 out[4096], want[1024];
	int			 status;

	if (!can_switch_users("no broker at all"))
		return;
	sockets_init(&so);
	client_as_nobody(&so, &rep);
	snprintf(want, sizeof want, "cannot connect to %s: No such file or "
	    "directory, nor to the system broker at %s: No such file or "
	    "directory; start it with `systemctl start locksd.socket`, or "
	    "start your own with `locksd`", so.user, so.sys);
	expect_failed(&rep, LOCKS_E_CONNECT, want);

	/* The CLI's one line says the same, and exits 69. */
	status = cli_as_nobody(&so, "status", out, sizeof out);
	snprintf(want, sizeof want, "locks: cannot connect to locksd at %s: "
	    "No such file or directory, nor to the system broker at %s: No "
	    "such file or directory; start it with `systemctl start "
	    "locksd.socket`, or start your own with `locksd`\n", so.user,
	    so.sys);
	ck_assert_msg(status == 69, "locks status exited %d, not 69: %s",
	    status, out);
	ck_assert_str_eq(out, want);
}
END_TEST

START_TEST(test_system_socket_served_by_a_stranger_is_refused)
{
	struct sockets		 so;
	struct h_daemon		 sys, user;
	struct client_report	 rep;
	char			 want[512];

	if (!can_switch_users("a stranger on the system socket"))
		return;
	sockets_init(&so);
	/* A daemon of OTHER_UID's, in a directory root then takes back. */
	start_in(&sys, OTHER_UID, so.sys_dir, 0755);
	ck_assert_int_eq(chown(so.sys_dir, 0, 0), 0);
	start_user(&user, &so);
	client_as_nobody(&so, &rep);
	/* Refused, not passed over: it answers, so it is the system's. */
	snprintf(want, sizeof want, "%s is served by uid %d (pid %ld), not by "
	    "root or the owner of its directory (uid 0); refusing to talk to "
	    "it", so.sys, OTHER_UID, (long)sys.pid);
	expect_failed(&rep, LOCKS_E_UNTRUSTED, want);
	ck_assert_int_eq(chown(so.sys_dir, OTHER_UID, OTHER_UID), 0);
	stop(&user);
	stop(&sys);
}
END_TEST

START_TEST(test_system_socket_in_a_directory_others_may_write_is_refused)
{
	struct sockets		 so;
	struct h_daemon		 sys;
	struct client_report	 rep;
	char			 want[512];

	if (!can_switch_users("a system socket anyone could replace"))
		return;
	sockets_init(&so);
	start_system(&sys, &so);
	ck_assert_int_eq(chmod(so.sys_dir, 0777), 0);
	client_as_nobody(&so, &rep);
	snprintf(want, sizeof want, "%s is writable by others (mode 0777); "
	    "refusing to use its socket", so.sys_dir);
	expect_failed(&rep, LOCKS_E_UNTRUSTED, want);
	ck_assert_int_eq(chmod(so.sys_dir, 0755), 0);
	stop(&sys);
}
END_TEST

START_TEST(test_system_socket_served_by_its_directory_owner_is_trusted)
{
	struct sockets		 so;
	struct h_daemon		 sys;
	struct client_report	 rep;

	if (!can_switch_users("the locksd user on the system socket"))
		return;
	sockets_init(&so);
	/* As locksd.service runs: User=locksd owns RuntimeDirectory. */
	start_in(&sys, OTHER_UID, so.sys_dir, 0755);
	client_as_nobody(&so, &rep);
	expect_reached(&rep, so.sys);
	stop(&sys);
}
END_TEST

START_TEST(test_root_takes_the_system_socket_unchecked)
{
	struct sockets	 so;
	struct h_daemon	 sys;
	locks_conn	*c = NULL;

	if (geteuid() != 0) {
		fprintf(stderr, "skipped (root's default): not root\n");
		return;
	}
	sockets_init(&so);
	start_system(&sys, &so);
	ck_assert_int_eq(use_sockets(&so), 0);
	/* Root's own choice, even in a directory others may write. */
	ck_assert_int_eq(chmod(so.sys_dir, 0777), 0);
	ck_assert_int_eq(locks_connect(NULL, "root", &c), LOCKS_OK);
	ck_assert_str_eq(locks_socket_path(c), so.sys);
	locks_close(c);
	ck_assert_int_eq(chmod(so.sys_dir, 0755), 0);
	stop(&sys);
}
END_TEST

static Suite *
discovery_suite(void)
{
	Suite	*s = suite_create("discovery");
	TCase	*tc = tcase_create("default socket");

	tcase_set_timeout(tc, 60);
	tcase_add_test(tc,
	    test_nonroot_client_takes_the_system_broker_when_it_answers);
	tcase_add_test(tc, test_nonroot_client_falls_back_to_its_own_broker);
	tcase_add_test(tc,
	    test_a_dead_system_broker_is_an_error_not_passed_over);
	tcase_add_test(tc,
	    test_no_broker_names_every_path_tried_and_how_to_start_one);
	tcase_add_test(tc, test_system_socket_served_by_a_stranger_is_refused);
	tcase_add_test(tc,
	    test_system_socket_in_a_directory_others_may_write_is_refused);
	tcase_add_test(tc,
	    test_system_socket_served_by_its_directory_owner_is_trusted);
	tcase_add_test(tc, test_root_takes_the_system_socket_unchecked);
	suite_add_tcase(s, tc);
	return s;
}

/* The tests run forked: see harness.h. */
int
main(void)
{
	return h_run_suite(discovery_suite());
}
