/*
 * Access control, the connection bound and losing the broker: a real
 * locksd started with --allow-user, --allow-group or --max-clients, peers
 * that connect as other users (the test must run as root for those), and
 * liblocks clients whose daemon is killed under them or that refuse a
 * default per-user socket that is not the caller's.
 *
 * Every test starts daemons of its own, with the options it is about, and
 * stops them itself: SIGTERM must still make a daemon exit 0 after it has
 * refused peers.  Should a test fail first, the harness makes its daemons
 * die with the test's forked process.
 *
 * A peer that runs as another user is a forked child that drops to that
 * user (and chosen groups), connects through liblocks, tries to take a
 * name and reports what happened over a pipe.
 */

#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <check.h>

#include "harness.h"

#define NOBODY		65534	/* nobody's uid, and its group's gid */
#define SOME_GID	4242	/* a group nobody is in unless we say so */
#define OTHER_GID	4243
#define OTHER_UID	4244	/* a uid (and gid) no account has */

/* Whether nobody can reach sockets under the run's directory. */
static int	 nobody_reaches_run_dir;

/* What a peer process saw. */
struct peer_report {
	int	 started;	/* it became the user it was asked to be */
	int	 connect_error;	/* locks_connect */
	int	 acquire_error;	/* locks_acquire, timeout 0 */
	int64_t	 held;		/* status: locks held in the daemon */
	char	 msg[256];	/* locks_last_message after a failure */
};

/* Whether the test can be someone else; say so when it cannot. */
static int
can_switch_users(const char *what)
{
	if (geteuid() != 0) {
		fprintf(stderr, "skipped (%s): only root can connect as "
		    "another user\n", what);
		return 0;
	}
	if (!nobody_reaches_run_dir) {
		fprintf(stderr, "skipped (%s): nobody cannot reach %s\n",
		    what, h_run_dir());
		return 0;
	}
	return 1;
}

/*
 * Whether nobody may search every directory down to the run's: a build
 * tree inside a private home is no failure of locksd.
 */
static int
nobody_can_reach(const char *dir)
{
	pid_t	 pid;
	int	 status;

	if (geteuid() != 0)
		return 0;
	fflush(NULL);
	if ((pid = fork()) == -1)
		return 0;
	if (pid == 0) {
		if (setgroups(0, NULL) == -1 || setgid(NOBODY) == -1 ||
		    setuid(NOBODY) == -1)
			_exit(1);
		_exit(access(dir, X_OK) == 0 ? 0 : 1);
	}
	if (waitpid(pid, &status, 0) == -1)
		return 0;
	return WIFEXITED(status) && WEXITSTATUS(status) == 0;
}

/* Learn, in the runner before the allow tests fork, whether nobody can. */
static void
probe_nobody(void)
{
	nobody_reaches_run_dir = nobody_can_reach(h_run_dir());
}

/* Start d with up to two options and their values. */
static void
start(struct h_daemon *d, const char *opt1, const char *val1,
    const char *opt2, const char *val2)
{
	memset(d, 0, sizeof *d);
	d->extra[0] = opt1;
	d->extra[1] = val1;
	d->extra[2] = opt2;
	d->extra[3] = val2;
	ck_assert_msg(h_daemon_start(d) == 0, "%s", h_error());
}

/* Stop d: it must exit 0 and remove its socket, refusals or not. */
static void
stop(struct h_daemon *d)
{
	h_conn_close_all();
	ck_assert_msg(h_daemon_stop(d) == 0, "%s", h_error());
}

/* The body of a peer process: see struct peer_report. */
static void __attribute__((noreturn))
peer_main(int report_fd, uid_t uid, gid_t gid, const gid_t *groups,
    size_t ngroups, const char *path, const char *name)
{
	struct locks_acquire_opts	 opts = LOCKS_ACQUIRE_OPTS_INIT;
	struct peer_report		 rep;
	locks_status			*st;
	locks_conn			*conn = NULL;

	memset(&rep, 0, sizeof rep);
	rep.held = -1;
	if (uid != (uid_t)-1 && (setgroups(ngroups, groups) == -1 ||
	    setgid(gid) == -1 || setuid(uid) == -1)) {
		snprintf(rep.msg, sizeof rep.msg, "cannot become uid %ld: %s",
		    (long)uid, strerror(errno));
		goto out;
	}
	rep.started = 1;
	rep.connect_error = locks_connect(path, "peer", &conn);
	if (rep.connect_error != LOCKS_OK) {
		snprintf(rep.msg, sizeof rep.msg, "%s",
		    locks_last_message(NULL));
		goto out;
	}
	opts.timeout = 0;
	rep.acquire_error = locks_acquire(conn, name, &opts, NULL);
	if (locks_status_get(conn, &st) == LOCKS_OK) {
		rep.held = locks_status_locks_held(st);
		locks_status_free(st);
	}
out:
	if (write(report_fd, &rep, sizeof rep) != sizeof rep)
		_exit(2);
	locks_close(conn);
	_exit(0);
}

/* What peer_main is given, through h_spawn_report. */
struct peer_args {
	uid_t		 uid;
	gid_t		 gid;
	const gid_t	*groups;
	size_t		 ngroups;
	const char	*path;
	const char	*name;
};

static void
peer_body(int report_fd, const void *arg)
{
	const struct peer_args	*p = arg;

	peer_main(report_fd, p->uid, p->gid, p->groups, p->ngroups, p->path,
	    p->name);
}

/*
 * Fork a peer that becomes uid with primary group gid and exactly the
 * supplementary groups given (uid -1: stays as it is), connects to path,
 * takes name at once, asks for the daemon's status, reports and exits.
 * Returns its pid, with the report.
 */
static pid_t
peer_as(uid_t uid, gid_t gid, const gid_t *groups, size_t ngroups,
    const char *path, const char *name, struct peer_report *ret_rep)
{
	struct peer_args	 args = {
		uid, gid, groups, ngroups, path, name
	};
	pid_t			 pid;

	pid = h_spawn_report(peer_body, &args, ret_rep, sizeof *ret_rep);
	ck_assert_msg(pid != -1, "the peer as uid %ld: %s", (long)uid,
	    h_error());
	ck_assert_msg(ret_rep->started, "%s", ret_rep->msg);
	return pid;
}

/* The peer was let in and took name. */
static void
expect_admitted(const struct peer_report *rep, const char *who)
{
	ck_assert_msg(rep->connect_error == LOCKS_OK,
	    "%s was refused: %s: %s", who,
	    locks_error_code(rep->connect_error), rep->msg);
	ck_assert_msg(rep->acquire_error == LOCKS_OK, "%s could not take "
	    "its lock: %s", who, locks_error_code(rep->acquire_error));
}

/* The peer was refused with permission_denied. */
static void
expect_refused(const struct peer_report *rep, const char *who)
{
	ck_assert_msg(rep->connect_error == LOCKS_E_PERMISSION_DENIED,
	    "%s: expected permission_denied, got %s (%s)", who,
	    locks_error_code(rep->connect_error), rep->msg);
}

/* Whether the daemon's log holds text, waiting up to secs for it. */
static int
log_has(const struct h_daemon *d, const char *text, double secs)
{
	double	 deadline = h_now() + secs;
	char	 line[1024];
	FILE	*fp;
	int	 found;

	for (;;) {
		found = 0;
		if ((fp = fopen(d->log_path, "r")) != NULL) {
			while (!found && fgets(line, sizeof line, fp) != NULL)
				found = strstr(line, text) != NULL;
			fclose(fp);
		}
		if (found || h_now() > deadline)
			return found;
		h_sleep(0.02);
	}
}

/* The log line a refusal of this uid and pid must leave. */
static void
expect_refusal_logged(const struct h_daemon *d, uid_t uid, pid_t pid)
{
	char	 text[128];

	snprintf(text, sizeof text, "refused connection from uid %ld pid %ld",
	    (long)uid, (long)pid);
	ck_assert_msg(log_has(d, text, h_slow(2)), "no \"%s\" in %s", text,
	    d->log_path);
}

/*
 * The user --allow-user names so that the test itself is refused: nobody
 * when the test runs as root, root otherwise.
 */
static const char *
someone_else(void)
{
	return getuid() == 0 ? "nobody" : "root";
}

/* Read the one error line a refused raw connection gets, then EOF. */
static const char *
refusal(struct h_conn *c, const char *code)
{
	struct json_object	*r;
	const char		*msg;

	r = h_recv(c, h_slow(H_REPLY_SECS));
	EXPECT_ERROR(r, code);
	ck_assert_msg(h_is(r, "id", json_type_null),
	    "expected \"id\": null, got %s", h_json(r));
	msg = h_str(h_get(r, "error"), "message");
	ck_assert_msg(msg != NULL && *msg != '\0', "no message: %s",
	    h_json(r));
	ck_assert_msg(h_recv_closed(c, h_slow(2)),
	    "no EOF after the refusal: %s", h_error());
	return msg;
}

/*
 * Who may connect.
 */

START_TEST(test_without_allow_options_anyone_may_connect)
{
	struct h_daemon		 d;
	struct peer_report	 rep;

	start(&d, NULL, NULL, NULL, NULL);
	peer_as((uid_t)-1, (gid_t)-1, NULL, 0, d.socket_path, "open-self",
	    &rep);
	expect_admitted(&rep, "the test's own user");
	if (can_switch_users("nobody connects to an open daemon")) {
		peer_as(NOBODY, NOBODY, NULL, 0, d.socket_path, "open-nobody",
		    &rep);
		expect_admitted(&rep, "nobody");
	}
	stop(&d);
}
END_TEST

START_TEST(test_allow_user_by_name_admits_that_user_and_refuses_root)
{
	struct h_daemon		 d;
	struct peer_report	 rep;
	struct h_conn		*c;

	if (!can_switch_users("--allow-user nobody"))
		return;
	start(&d, "--allow-user", "nobody", NULL, NULL);
	peer_as(NOBODY, NOBODY, NULL, 0, d.socket_path, "user-nobody", &rep);
	expect_admitted(&rep, "nobody");

	/* Root itself: one permission_denied line with a null id, then EOF. */
	c = h_conn_open(d.socket_path);
	ck_assert_msg(c != NULL, "%s", h_error());
	refusal(c, "permission_denied");
	expect_refusal_logged(&d, 0, getpid());
	stop(&d);
}
END_TEST

START_TEST(test_allow_user_by_number_admits_that_uid_only)
{
	struct h_daemon		 d;
	struct peer_report	 rep;
	pid_t			 pid;

	if (!can_switch_users("--allow-user 65534"))
		return;
	start(&d, "--allow-user", "65534", NULL, NULL);
	peer_as(NOBODY, NOBODY, NULL, 0, d.socket_path, "uid-nobody", &rep);
	expect_admitted(&rep, "uid 65534");
	pid = peer_as(1, NOBODY, NULL, 0, d.socket_path, "uid-daemon", &rep);
	expect_refused(&rep, "uid 1");
	expect_refusal_logged(&d, 1, pid);
	pid = peer_as((uid_t)-1, (gid_t)-1, NULL, 0, d.socket_path,
	    "uid-root", &rep);
	expect_refused(&rep, "root");
	expect_refusal_logged(&d, 0, pid);
	stop(&d);
}
END_TEST

START_TEST(test_allow_user_may_be_repeated)
{
	struct h_daemon		 d;
	struct peer_report	 rep;

	if (!can_switch_users("--allow-user twice"))
		return;
	start(&d, "--allow-user", "daemon", "--allow-user", "65534");
	peer_as(NOBODY, NOBODY, NULL, 0, d.socket_path, "rep-nobody", &rep);
	expect_admitted(&rep, "nobody (by number)");
	peer_as(1, NOBODY, NULL, 0, d.socket_path, "rep-daemon", &rep);
	expect_admitted(&rep, "daemon (by name)");
	peer_as(2, NOBODY, NULL, 0, d.socket_path, "rep-bin", &rep);
	expect_refused(&rep, "bin");
	peer_as((uid_t)-1, (gid_t)-1, NULL, 0, d.socket_path, "rep-root",
	    &rep);
	expect_refused(&rep, "root");
	stop(&d);
}
END_TEST

START_TEST(test_allow_group_admits_a_peer_whose_primary_group_matches)
{
	struct h_daemon		 d;
	struct peer_report	 rep;
	pid_t			 pid;

	if (!can_switch_users("--allow-group 4243"))
		return;
	start(&d, "--allow-group", "4243", NULL, NULL);
	peer_as(NOBODY, OTHER_GID, NULL, 0, d.socket_path, "gid-in", &rep);
	expect_admitted(&rep, "nobody with primary gid 4243");
	pid = peer_as(NOBODY, NOBODY, NULL, 0, d.socket_path, "gid-out",
	    &rep);
	expect_refused(&rep, "nobody with gid 65534");
	expect_refusal_logged(&d, NOBODY, pid);
	peer_as((uid_t)-1, (gid_t)-1, NULL, 0, d.socket_path, "gid-root",
	    &rep);
	expect_refused(&rep, "root");
	stop(&d);
}
END_TEST

START_TEST(test_allow_group_by_name_admits_its_members)
{
	struct h_daemon		 d;
	struct peer_report	 rep;
	struct group		*gr;

	if (!can_switch_users("--allow-group by name"))
		return;
	if ((gr = getgrgid(NOBODY)) == NULL) {
		fprintf(stderr, "skipped: no group has gid %d\n", NOBODY);
		return;
	}
	start(&d, "--allow-group", gr->gr_name, NULL, NULL);
	peer_as(NOBODY, NOBODY, NULL, 0, d.socket_path, "gname-in", &rep);
	expect_admitted(&rep, gr->gr_name);
	peer_as(NOBODY, SOME_GID, NULL, 0, d.socket_path, "gname-out", &rep);
	expect_refused(&rep, "nobody with gid 4242");
	stop(&d);
}
END_TEST

START_TEST(test_allow_group_admits_a_peer_by_its_supplementary_groups)
{
	static const gid_t	 some[] = { OTHER_GID, SOME_GID };
	static const gid_t	 others[] = { OTHER_GID };
	struct h_daemon		 d;
	struct peer_report	 rep;

	if (!can_switch_users("supplementary groups"))
		return;
	start(&d, "--allow-group", "4242", NULL, NULL);
	peer_as(NOBODY, NOBODY, some, 2, d.socket_path, "supp-in", &rep);
	expect_admitted(&rep, "nobody in supplementary group 4242");
	peer_as(NOBODY, NOBODY, others, 1, d.socket_path, "supp-out", &rep);
	expect_refused(&rep, "nobody in supplementary group 4243 only");
	peer_as(NOBODY, NOBODY, NULL, 0, d.socket_path, "supp-none", &rep);
	expect_refused(&rep, "nobody in no supplementary group");
	stop(&d);
}
END_TEST

START_TEST(test_allow_user_and_allow_group_each_admit)
{
	struct h_daemon		 d;
	struct peer_report	 rep;

	if (!can_switch_users("--allow-user with --allow-group"))
		return;
	start(&d, "--allow-user", "1", "--allow-group", "4242");
	peer_as(1, NOBODY, NULL, 0, d.socket_path, "mix-user", &rep);
	expect_admitted(&rep, "uid 1");
	peer_as(NOBODY, SOME_GID, NULL, 0, d.socket_path, "mix-group", &rep);
	expect_admitted(&rep, "gid 4242");
	peer_as(NOBODY, NOBODY, NULL, 0, d.socket_path, "mix-none", &rep);
	expect_refused(&rep, "nobody");
	stop(&d);
}
END_TEST

START_TEST(test_refused_peer_cannot_take_locks)
{
	struct h_daemon		 d;
	struct peer_report	 rep;
	struct h_conn		*c;
	char			 path[256];

	start(&d, "--allow-user", someone_else(), NULL, NULL);
	/*
	 * Requests sent before the refusal could be read: none may be
	 * served.  The daemon may have closed already, failing the send.
	 */
	c = h_conn_open(d.socket_path);
	ck_assert_msg(c != NULL, "%s", h_error());
	(void)h_send(c, "{\"op\":\"acquire\",\"id\":1,"
	    "\"name\":\"refused-x\",\"timeout\":0}\n"
	    "{\"op\":\"acquire\",\"id\":2,\"name\":\"refused-y\","
	    "\"mode\":\"shared\"}\n{\"op\":\"ping\",\"id\":3}");
	refusal(c, "permission_denied");
	h_conn_close(c);
	snprintf(path, sizeof path, "%s/refused-x", d.lock_dir);
	ck_assert_msg(access(path, F_OK) == -1,
	    "the refused peer's acquire made %s", path);

	if (can_switch_users("an allowed peer takes what was refused")) {
		peer_as(NOBODY, NOBODY, NULL, 0, d.socket_path, "refused-x",
		    &rep);
		expect_admitted(&rep, "nobody");
		ck_assert_msg(rep.held == 1, "the daemon holds %lld locks "
		    "with only nobody's one taken", (long long)rep.held);
	}
	stop(&d);
}
END_TEST

START_TEST(test_unknown_allow_user_or_group_exits_2)
{
	static const char *const cases[][2] = {
		{ "--allow-user", "no-such-user-xyz" },
		{ "--allow-group", "no-such-group-xyz" },
	};
	struct h_daemon	 d;
	char		 dir[128], want[64];
	size_t		 i;
	pid_t		 pid;
	int		 status;

	for (i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		snprintf(dir, sizeof dir, "%s/unknown-XXXXXX", h_run_dir());
		ck_assert_ptr_nonnull(mkdtemp(dir));
		memset(&d, 0, sizeof d);
		ck_assert_int_eq(h_daemon_paths(&d, dir), 0);
		d.extra[0] = cases[i][0];
		d.extra[1] = cases[i][1];
		pid = h_daemon_spawn(&d);
		ck_assert_int_gt(pid, 0);
		ck_assert_msg(h_wait_exit(pid, h_slow(H_START_SECS),
		    &status) == 0, "%s", h_error());
		ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 2,
		    "locksd %s %s: status %#x, not exit 2", cases[i][0],
		    cases[i][1], status);
		snprintf(want, sizeof want, "no such %s",
		    cases[i][0] + strlen("--allow-"));
		ck_assert_msg(log_has(&d, want, 0), "%s %s: no \"%s\" on "
		    "stderr", cases[i][0], cases[i][1], want);
		ck_assert_msg(access(d.socket_path, F_OK) == -1,
		    "locksd made its socket before refusing %s", cases[i][1]);
	}
}
END_TEST

/*
 * liblocks and the daemon's refusals.
 */

START_TEST(test_liblocks_connect_reports_permission_denied_with_message)
{
	struct h_daemon	 d;
	struct h_conn	*c;
	locks_conn	*conn = NULL;
	char		 msg[256];

	start(&d, "--allow-user", someone_else(), NULL, NULL);
	c = h_conn_open(d.socket_path);
	ck_assert_msg(c != NULL, "%s", h_error());
	snprintf(msg, sizeof msg, "%s", refusal(c, "permission_denied"));

	ck_assert_int_eq(locks_connect(d.socket_path, "denied", &conn),
	    LOCKS_E_PERMISSION_DENIED);
	ck_assert_ptr_null(conn);
	ck_assert_str_eq(locks_last_message(NULL), msg);
	stop(&d);
}
END_TEST

START_TEST(test_liblocks_connect_past_max_clients_reports_limit)
{
	struct h_daemon	 d;
	struct h_conn	*raw;
	locks_conn	*a = NULL, *b = NULL, *c = NULL;
	double		 deadline;
	char		 msg[256];
	int		 error;

	start(&d, "--max-clients", "2", NULL, NULL);
	ck_assert_int_eq(locks_connect(d.socket_path, "a", &a), LOCKS_OK);
	ck_assert_int_eq(locks_connect(d.socket_path, "b", &b), LOCKS_OK);

	/* The third: one limit line with a null id, then EOF. */
	raw = h_conn_open(d.socket_path);
	ck_assert_msg(raw != NULL, "%s", h_error());
	snprintf(msg, sizeof msg, "%s", refusal(raw, "limit"));
	h_conn_close(raw);
	ck_assert_int_eq(locks_connect(d.socket_path, "c", &c),
	    LOCKS_E_LIMIT);
	ck_assert_ptr_null(c);
	ck_assert_str_eq(locks_last_message(NULL), msg);

	/* Those already in are served as before. */
	ck_assert_int_eq(locks_ping(a), LOCKS_OK);
	ck_assert_int_eq(locks_acquire(b, "max-clients-x", NULL, NULL),
	    LOCKS_OK);
	ck_assert_int_eq(locks_ping(b), LOCKS_OK);

	/* Once one leaves, a newcomer gets its place. */
	locks_close(a);
	deadline = h_now() + h_slow(2);
	while ((error = locks_connect(d.socket_path, "c", &c)) ==
	    LOCKS_E_LIMIT && h_now() < deadline)
		h_sleep(0.02);
	ck_assert_msg(error == LOCKS_OK, "after a client left: %s: %s",
	    locks_error_code(error), locks_last_message(NULL));
	ck_assert_int_eq(locks_ping(c), LOCKS_OK);
	/* And the bound holds again. */
	ck_assert_int_eq(locks_connect(d.socket_path, "d", &a),
	    LOCKS_E_LIMIT);
	locks_close(b);
	locks_close(c);
	stop(&d);
}
END_TEST

/*
 * Losing the broker.
 */

START_TEST(test_liblocks_learns_its_locks_are_lost_when_locksd_is_killed)
{
	struct h_daemon	 d;
	struct pollfd	 pfd;
	locks_conn	*conn = NULL;
	double		 t0;
	int		 r;

	start(&d, NULL, NULL, NULL, NULL);
	ck_assert_int_eq(locks_connect(d.socket_path, "lost", &conn),
	    LOCKS_OK);
	ck_assert_int_ge(locks_fd(conn), 0);
	ck_assert_int_eq(locks_held(conn, "lost-never"), 0);

	/* Held, then released: no longer held. */
	ck_assert_int_eq(locks_acquire(conn, "lost-x", NULL, NULL), LOCKS_OK);
	ck_assert_int_eq(locks_held(conn, "lost-x"), 1);
	ck_assert_int_eq(locks_release(conn, "lost-x"), LOCKS_OK);
	ck_assert_int_eq(locks_held(conn, "lost-x"), 0);

	ck_assert_int_eq(locks_acquire(conn, "lost-x", NULL, NULL), LOCKS_OK);
	ck_assert_int_eq(locks_held(conn, "lost-x"), 1);
	ck_assert_int_eq(locks_held(conn, "lost-never"), 0);
	/* A live connection: the check answers at once, and says so. */
	t0 = h_now();
	ck_assert_int_eq(locks_check(conn), LOCKS_OK);
	ck_assert_msg(h_now() - t0 < 1, "locks_check blocked %.2f s",
	    h_now() - t0);
	/* Nothing arrives between requests while the daemon lives. */
	pfd.fd = locks_fd(conn);
	pfd.events = POLLIN;
	ck_assert_int_eq(poll(&pfd, 1, 200), 0);
	ck_assert_int_eq(locks_held(conn, "lost-x"), 1);

	h_daemon_kill(&d);
	pfd.revents = 0;
	r = poll(&pfd, 1, (int)(h_slow(2) * 1000));
	ck_assert_msg(r == 1, "locks_fd not readable within 2 s of the "
	    "daemon's death (poll %d)", r);
	t0 = h_now();
	ck_assert_int_eq(locks_check(conn), LOCKS_E_LOST);
	ck_assert_msg(h_now() - t0 < 1, "locks_check blocked %.2f s",
	    h_now() - t0);
	ck_assert_int_gt(strlen(locks_last_message(conn)), 0);
	ck_assert_int_eq(locks_held(conn, "lost-x"), 0);
	ck_assert_int_eq(locks_held(conn, "lost-never"), 0);
	ck_assert_int_eq(locks_ping(conn), LOCKS_E_LOST);
	ck_assert_int_eq(locks_check(conn), LOCKS_E_LOST);
	ck_assert_int_eq(locks_release(conn, "lost-x"), LOCKS_E_LOST);
	ck_assert_int_eq(locks_held(conn, "lost-x"), 0);
	locks_close(conn);
}
END_TEST

START_TEST(test_liblocks_held_is_false_once_locksd_is_gone_without_polling)
{
	struct h_daemon	 d;
	locks_conn	*conn = NULL;
	double		 deadline;
	int		 held = 1;

	/* No poll first: locks_held alone must notice the loss. */
	start(&d, NULL, NULL, NULL, NULL);
	ck_assert_int_eq(locks_connect(d.socket_path, "lost2", &conn),
	    LOCKS_OK);
	ck_assert_int_eq(locks_acquire(conn, "lost-y", NULL, NULL), LOCKS_OK);
	ck_assert_int_eq(locks_held(conn, "lost-y"), 1);
	h_daemon_kill(&d);
	deadline = h_now() + h_slow(2);
	while ((held = locks_held(conn, "lost-y")) != 0 && h_now() < deadline)
		h_sleep(0.01);
	ck_assert_msg(held == 0, "locks_held still 1 2 s after the daemon "
	    "died");
	ck_assert_int_eq(locks_check(conn), LOCKS_E_LOST);
	locks_close(conn);
}
END_TEST

START_TEST(test_liblocks_loss_calls_accept_null)
{
	ck_assert_int_eq(locks_fd(NULL), -1);
	ck_assert_int_eq(locks_held(NULL, "x"), 0);
	ck_assert_int_eq(locks_check(NULL), LOCKS_E_INVAL);
}
END_TEST

/*
 * Whom liblocks talks to on the default per-user socket.  The caller is
 * nobody with $XDG_RUNTIME_DIR set to a fresh directory of the test (one
 * nobody may search), so its default socket is <that>/locksd/locksd.sock;
 * a second user, OTHER_UID, plays the squatter.
 */

/*
 * Point the default socket into a fresh $XDG_RUNTIME_DIR, xdg; dir gets
 * its locksd/ (not created), and point the system socket at nothing.  The
 * test's own environment is the caller's.
 */
static void
runtime_dir(char *xdg, size_t xsize, char *dir, size_t dsize)
{
	char	 sys[256];

	ck_assert_int_lt(snprintf(xdg, xsize, "%s/x-XXXXXX", h_run_dir()),
	    (int)xsize);
	ck_assert_msg(mkdtemp(xdg) != NULL, "mkdtemp %s: %s", xdg,
	    strerror(errno));
	ck_assert_int_eq(chmod(xdg, 0711), 0);
	ck_assert_int_lt(snprintf(dir, dsize, "%s/locksd", xdg), (int)dsize);
	ck_assert_int_eq(setenv("XDG_RUNTIME_DIR", xdg, 1), 0);
	ck_assert_int_eq(unsetenv("LOCKS_SOCKET"), 0);
	/* No system broker answers, whatever runs in the real /run. */
	ck_assert_int_lt(snprintf(sys, sizeof sys, "%s/no-system.sock", xdg),
	    (int)sizeof sys);
	ck_assert_int_eq(setenv("LOCKS_SYSTEM_SOCKET", sys, 1), 0);
}

/*
 * Start d as uid (0: as the test), its socket and lock dir in dir, made
 * for it 0700 and given mode once the daemon listens: whatever the daemon
 * accepts at start, the client must judge what it finds.
 */
static void
start_as(struct h_daemon *d, uid_t uid, const char *dir, mode_t mode)
{
	ck_assert_msg(h_daemon_start_as(d, uid, dir, mode) == 0, "%s",
	    h_error());
}

/* The peer was refused by liblocks itself, with a message holding want. */
static void
expect_untrusted(const struct peer_report *rep, const char *want)
{
	ck_assert_msg(rep->connect_error == LOCKS_E_UNTRUSTED,
	    "expected untrusted_socket, got %s (%s)",
	    locks_error_code(rep->connect_error), rep->msg);
	ck_assert_msg(strstr(rep->msg, want) != NULL,
	    "expected \"%s\" in the message \"%s\"", want, rep->msg);
}

START_TEST(test_default_socket_in_another_users_dir_is_refused)
{
	struct h_daemon		 d;
	struct peer_report	 rep;
	char			 xdg[128], dir[128], want[256];

	if (!can_switch_users("a squatted socket directory"))
		return;
	/* The squatter's own daemon, in a directory anyone may search. */
	runtime_dir(xdg, sizeof xdg, dir, sizeof dir);
	start_as(&d, OTHER_UID, dir, 0755);
	peer_as(NOBODY, NOBODY, NULL, 0, NULL, "squat", &rep);
	snprintf(want, sizeof want, "%s is owned by uid %d, not you (%d); "
	    "refusing to use its socket", dir, OTHER_UID, NOBODY);
	expect_untrusted(&rep, want);

	/* Root's directory is not the caller's either. */
	ck_assert_int_eq(chown(dir, 0, 0), 0);
	peer_as(NOBODY, NOBODY, NULL, 0, NULL, "squat", &rep);
	snprintf(want, sizeof want, "%s is owned by uid 0, not you (%d)",
	    dir, NOBODY);
	expect_untrusted(&rep, want);
	ck_assert_int_eq(chown(dir, OTHER_UID, OTHER_UID), 0);
	stop(&d);
}
END_TEST

START_TEST(test_default_socket_in_a_dir_others_can_write_is_refused)
{
	static const struct {
		mode_t		 mode;
		const char	*want;
	} modes[] = {
		{ 0777, "is writable by others (mode 0777)" },
		{ 0770, "is writable by its group (mode 0770)" },
		{ 0720, "is writable by its group (mode 0720)" },
		{ 0703, "is writable by others (mode 0703)" },
		/* A sticky bit guards names, not a per-user directory. */
		{ 01777, "is writable by others (mode 1777)" },
	};
	struct h_daemon		 d;
	struct peer_report	 rep;
	char			 xdg[128], dir[128], want[256];
	size_t			 i;

	if (!can_switch_users("a socket directory others can write"))
		return;
	runtime_dir(xdg, sizeof xdg, dir, sizeof dir);
	start_as(&d, NOBODY, dir, 0700);
	for (i = 0; i < sizeof modes / sizeof modes[0]; i++) {
		ck_assert_int_eq(chmod(dir, modes[i].mode), 0);
		peer_as(NOBODY, NOBODY, NULL, 0, NULL, "writable", &rep);
		snprintf(want, sizeof want, "%s %s; refusing to use its "
		    "socket", dir, modes[i].want);
		expect_untrusted(&rep, want);
	}
	/* Read and search for others are fine. */
	ck_assert_int_eq(chmod(dir, 0755), 0);
	peer_as(NOBODY, NOBODY, NULL, 0, NULL, "writable", &rep);
	expect_admitted(&rep, "nobody on its own 0755 directory");
	stop(&d);
}
END_TEST

START_TEST(test_default_socket_dir_that_is_a_symlink_is_refused)
{
	struct h_daemon		 d;
	struct peer_report	 rep;
	char			 xdg[128], dir[128], real[160], want[256];

	if (!can_switch_users("a socket directory that is a symlink"))
		return;
	/* Even a link to the caller's own good directory. */
	runtime_dir(xdg, sizeof xdg, dir, sizeof dir);
	snprintf(real, sizeof real, "%s/real", xdg);
	start_as(&d, NOBODY, real, 0700);
	ck_assert_int_eq(symlink("real", dir), 0);
	ck_assert_int_eq(lchown(dir, NOBODY, NOBODY), 0);
	peer_as(NOBODY, NOBODY, NULL, 0, NULL, "link", &rep);
	snprintf(want, sizeof want, "%s is a symbolic link, not a directory; "
	    "refusing to use its socket", dir);
	expect_untrusted(&rep, want);
	stop(&d);
}
END_TEST

START_TEST(test_default_socket_served_by_another_user_is_refused)
{
	struct h_daemon		 d;
	struct peer_report	 rep;
	char			 xdg[128], dir[128], want[256];

	if (!can_switch_users("a daemon of another user"))
		return;
	/* The daemon binds in its own directory, then it becomes ours. */
	runtime_dir(xdg, sizeof xdg, dir, sizeof dir);
	start_as(&d, OTHER_UID, dir, 0700);
	ck_assert_int_eq(chown(dir, NOBODY, NOBODY), 0);
	peer_as(NOBODY, NOBODY, NULL, 0, NULL, "peer", &rep);
	snprintf(want, sizeof want, "%s is served by uid %d (pid %ld), not "
	    "by you (%d) or root; refusing to talk to it", d.socket_path,
	    OTHER_UID, (long)d.pid, NOBODY);
	expect_untrusted(&rep, want);
	/* Give it back, so the daemon can remove its socket. */
	ck_assert_int_eq(chown(dir, OTHER_UID, OTHER_UID), 0);
	stop(&d);
}
END_TEST

START_TEST(test_default_socket_of_the_caller_or_of_root_is_used)
{
	struct h_daemon		 d;
	struct peer_report	 rep;
	char			 xdg[128], dir[128];

	if (!can_switch_users("the caller's own default socket"))
		return;
	runtime_dir(xdg, sizeof xdg, dir, sizeof dir);
	start_as(&d, NOBODY, dir, 0700);
	peer_as(NOBODY, NOBODY, NULL, 0, NULL, "mine", &rep);
	expect_admitted(&rep, "nobody on its own daemon");
	ck_assert_int_eq(rep.held, 1);
	stop(&d);

	/* Root's daemon in the caller's directory is trusted too. */
	runtime_dir(xdg, sizeof xdg, dir, sizeof dir);
	start_as(&d, 0, dir, 0700);
	ck_assert_int_eq(chown(dir, NOBODY, NOBODY), 0);
	peer_as(NOBODY, NOBODY, NULL, 0, NULL, "root", &rep);
	expect_admitted(&rep, "nobody on root's daemon");
	ck_assert_int_eq(rep.held, 1);
	stop(&d);
}
END_TEST

START_TEST(test_explicit_socket_or_locks_socket_is_not_checked)
{
	struct h_daemon		 d;
	struct peer_report	 rep;
	char			 xdg[128], dir[128];

	if (!can_switch_users("an explicit socket"))
		return;
	/* Everything about it is wrong for a default socket. */
	runtime_dir(xdg, sizeof xdg, dir, sizeof dir);
	start_as(&d, OTHER_UID, dir, 0777);
	peer_as(NOBODY, NOBODY, NULL, 0, d.socket_path, "explicit", &rep);
	expect_admitted(&rep, "nobody given the socket");
	ck_assert_int_eq(setenv("LOCKS_SOCKET", d.socket_path, 1), 0);
	peer_as(NOBODY, NOBODY, NULL, 0, NULL, "env", &rep);
	expect_admitted(&rep, "nobody with $LOCKS_SOCKET");
	ck_assert_int_eq(unsetenv("LOCKS_SOCKET"), 0);
	peer_as(NOBODY, NOBODY, NULL, 0, NULL, "default", &rep);
	ck_assert_int_eq(rep.connect_error, LOCKS_E_UNTRUSTED);
	stop(&d);
}
END_TEST

/* Read a file into buf, as a string. */
static void
slurp(const char *path, char *buf, size_t size)
{
	ck_assert_msg(h_slurp(path, buf, size) == 0, "%s", h_error());
}

START_TEST(test_cli_refuses_an_untrusted_default_socket_with_69)
{
	struct h_daemon	 d;
	char		 xdg[128], dir[128], err[256], want[256], text[1024];
	int		 status;

	if (!can_switch_users("the CLI on a squatted socket directory"))
		return;
	runtime_dir(xdg, sizeof xdg, dir, sizeof dir);
	snprintf(err, sizeof err, "%s/stderr", xdg);
	start_as(&d, OTHER_UID, dir, 0755);
	status = h_system("setpriv --reuid=%d --regid=%d --clear-groups "
	    "%s status >/dev/null 2>%s", NOBODY, NOBODY, LOCKS_CLI_PATH, err);
	slurp(err, text, sizeof text);
	ck_assert_msg(status == 69, "locks status exited %d, not 69: %s",
	    status, text);
	snprintf(want, sizeof want, "locks: %s is owned by uid %d, not you "
	    "(%d); refusing to use its socket\n", dir, OTHER_UID, NOBODY);
	ck_assert_str_eq(text, want);

	/* With --socket it is the user's choice. */
	status = h_system("setpriv --reuid=%d --regid=%d --clear-groups "
	    "%s --socket %s status >/dev/null 2>%s", NOBODY, NOBODY,
	    LOCKS_CLI_PATH, d.socket_path, err);
	slurp(err, text, sizeof text);
	ck_assert_msg(status == 0, "locks --socket status exited %d: %s",
	    status, text);
	stop(&d);
}
END_TEST

static Suite *
access_suite(void)
{
	Suite	*s = suite_create("access");
	TCase	*tc;

	tc = h_tcase("allow", 60);
	tcase_add_unchecked_fixture(tc, probe_nobody, NULL);
	tcase_add_test(tc, test_without_allow_options_anyone_may_connect);
	tcase_add_test(tc,
	    test_allow_user_by_name_admits_that_user_and_refuses_root);
	tcase_add_test(tc, test_allow_user_by_number_admits_that_uid_only);
	tcase_add_test(tc, test_allow_user_may_be_repeated);
	tcase_add_test(tc,
	    test_allow_group_admits_a_peer_whose_primary_group_matches);
	tcase_add_test(tc, test_allow_group_by_name_admits_its_members);
	tcase_add_test(tc,
	    test_allow_group_admits_a_peer_by_its_supplementary_groups);
	tcase_add_test(tc, test_allow_user_and_allow_group_each_admit);
	tcase_add_test(tc, test_refused_peer_cannot_take_locks);
	tcase_add_test(tc, test_unknown_allow_user_or_group_exits_2);
	suite_add_tcase(s, tc);

	tc = h_tcase("liblocks", 60);
	tcase_add_test(tc,
	    test_liblocks_connect_reports_permission_denied_with_message);
	tcase_add_test(tc,
	    test_liblocks_connect_past_max_clients_reports_limit);
	suite_add_tcase(s, tc);

	tc = h_tcase("lost", 60);
	tcase_add_test(tc,
	    test_liblocks_learns_its_locks_are_lost_when_locksd_is_killed);
	tcase_add_test(tc,
	    test_liblocks_held_is_false_once_locksd_is_gone_without_polling);
	tcase_add_test(tc, test_liblocks_loss_calls_accept_null);
	suite_add_tcase(s, tc);

	tc = h_tcase("trust", 60);
	tcase_add_unchecked_fixture(tc, probe_nobody, NULL);
	tcase_add_test(tc, test_default_socket_in_another_users_dir_is_refused);
	tcase_add_test(tc,
	    test_default_socket_in_a_dir_others_can_write_is_refused);
	tcase_add_test(tc,
	    test_default_socket_dir_that_is_a_symlink_is_refused);
	tcase_add_test(tc,
	    test_default_socket_served_by_another_user_is_refused);
	tcase_add_test(tc,
	    test_default_socket_of_the_caller_or_of_root_is_used);
	tcase_add_test(tc, test_explicit_socket_or_locks_socket_is_not_checked);
	tcase_add_test(tc,
	    test_cli_refuses_an_untrusted_default_socket_with_69);
	suite_add_tcase(s, tc);
	return s;
}

/* Each test runs in a child its daemons die with. */
int
main(void)
{
	return h_run_suite(access_suite());
}
