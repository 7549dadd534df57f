/*
 * liblocks, the C library, against a real locksd on a temporary socket:
 * connecting and the default socket path, acquire with its on_blocking
 * callback and timeouts, release and the refusals, list and status
 * accessors, the name rule and every error's name, and what a caller sees
 * when the daemon dies.
 *
 * The TCase "liblocks" shares one daemon (h_srv), started in an unchecked
 * fixture (harness.h says why), and each test uses lock names of its own;
 * a test that kills its daemon starts one inside the test, and the
 * harness makes it die with the test's process.
 *
 * Time bounds are generous on purpose (CI machines are noisy), and
 * stretched further when $LOCKSD_WRAPPER (say, valgrind) slows the daemon.
 */

#include <sys/file.h>
#include <sys/wait.h>

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <check.h>

#include "harness.h"
#include "protocol.h"

/* What the on_blocking callback saw. */
struct seen {
	int		 calls;
	int		 position;
	char		 name[64];
	size_t		 nholders;
	size_t		 nwaiters;
	int		 external;
	pid_t		 pid;
	uid_t		 uid;
	gid_t		 gid;
	char		 client[64];
	char		 owner[64];
	char		 command[64];
	enum locks_mode	 mode;
	double		 since;
	int64_t		 token;
	int		 past_end_null;
	struct h_holder	*release;	/* let this holder go, if set */
};

static void
on_blocking(const locks_lock *lock, int position, void *arg)
{
	struct seen		*seen = arg;
	const locks_holder	*h;

	seen->calls++;
	seen->position = position;
	snprintf(seen->name, sizeof seen->name, "%s", locks_lock_name(lock));
	seen->nholders = locks_lock_nholders(lock);
	seen->nwaiters = locks_lock_nwaiters(lock);
	if ((h = locks_lock_holder(lock, 0)) != NULL) {
		seen->external = locks_holder_external(h);
		seen->pid = locks_holder_pid(h);
		seen->uid = locks_holder_uid(h);
		seen->gid = locks_holder_gid(h);
		snprintf(seen->client, sizeof seen->client, "%s",
		    locks_holder_client(h));
		snprintf(seen->owner, sizeof seen->owner, "%s",
		    locks_holder_owner(h));
		snprintf(seen->command, sizeof seen->command, "%s",
		    locks_holder_command(h));
		seen->mode = locks_holder_mode(h);
		seen->since = locks_holder_since(h);
		seen->token = locks_holder_token(h);
	}
	seen->past_end_null = locks_lock_holder(lock, seen->nholders) ==
	    NULL;
	if (seen->release != NULL)
		h_holder_release(seen->release);
}

START_TEST(test_liblocks_connect_without_label_uses_program_name)
{
	locks_conn	*c = h_lib_conn(NULL);
	struct h_conn	*raw = h_connect();
	int64_t		 token = 0;

	ck_assert_str_eq(locks_socket_path(c), h_srv.socket_path);
	ck_assert_int_eq(locks_ping(c), LOCKS_OK);
	ck_assert_int_eq(locks_acquire(c, "ll-anon", NULL, &token), LOCKS_OK);
	ck_assert_int_gt(token, 0);
	ck_assert_str_eq(h_str(h_member(h_listed(raw, "ll-anon"), "holders", 0),
	    "client"), program_invocation_short_name);
	locks_close(c);
	locks_close(NULL);
}
END_TEST

START_TEST(test_liblocks_acquire_reports_holders_to_on_blocking)
{
	struct locks_acquire_opts	 opts = LOCKS_ACQUIRE_OPTS_INIT;
	struct h_holder			 holder;
	struct seen			 seen;
	struct h_conn			*raw = h_connect();
	locks_conn			*c = h_lib_conn("ll-me");
	int64_t				 token = 0;
	double				 t0;
	pid_t				 holder_pid;
	int				 rc;

	ck_assert_msg(h_holder_spawn(&holder, h_srv.socket_path, "ll-blk",
	    LOCKS_EXCLUSIVE, "ll-holder", "ll-owner") == 0, "%s", h_error());
	holder_pid = holder.pid;
	memset(&seen, 0, sizeof seen);
	seen.release = &holder;
	opts.notify_after = 0.2;
	opts.owner = "ll-waiter";
	opts.on_blocking = on_blocking;
	opts.arg = &seen;
	t0 = h_now();
	rc = locks_acquire(c, "ll-blk", &opts, &token);
	ck_assert_msg(rc == LOCKS_OK, "locks_acquire: %s: %s",
	    locks_error_code(rc), locks_last_message(c));
	ck_assert_msg(h_now() - t0 >= 0.15, "granted before notify_after");
	ck_assert_int_gt(token, holder.token);

	ck_assert_int_eq(seen.calls, 1);
	ck_assert_str_eq(seen.name, "ll-blk");
	ck_assert_int_eq(seen.position, 1);
	ck_assert_int_eq(seen.nholders, 1);
	ck_assert_int_eq(seen.external, 0);
	ck_assert_int_eq(seen.pid, holder_pid);
	ck_assert_int_eq(seen.uid, getuid());
	ck_assert_int_eq(seen.gid, getgid());
	ck_assert_str_eq(seen.client, "ll-holder");
	ck_assert_str_eq(seen.owner, "ll-owner");
	ck_assert_str_eq(seen.command, "");
	ck_assert_int_eq(seen.mode, LOCKS_EXCLUSIVE);
	ck_assert_msg(seen.since > h_wall_now() - 60 &&
	    seen.since <= h_wall_now(), "since %f", seen.since);
	ck_assert_int_eq(seen.token, holder.token);
	ck_assert(seen.past_end_null);

	ck_assert_str_eq(h_str(h_member(h_listed(raw, "ll-blk"), "holders", 0),
	    "owner"), "ll-waiter");
	ck_assert_int_eq(locks_release(c, "ll-blk"), LOCKS_OK);
	locks_close(c);
}
END_TEST

START_TEST(test_liblocks_acquire_times_out_and_tries_once)
{
	struct locks_acquire_opts	 opts = LOCKS_ACQUIRE_OPTS_INIT;
	struct h_holder			 holder;
	struct seen			 seen;
	locks_conn			*c = h_lib_conn("ll-to");
	int64_t				 token = -1;
	double				 t0;

	ck_assert_msg(h_holder_spawn(&holder, h_srv.socket_path, "ll-to",
	    LOCKS_SHARED, "ll-holder", "") == 0, "%s", h_error());
	memset(&seen, 0, sizeof seen);
	opts.timeout = 0;
	opts.on_blocking = on_blocking;
	opts.arg = &seen;
	t0 = h_now();
	ck_assert_int_eq(locks_acquire(c, "ll-to", &opts, &token),
	    LOCKS_E_TIMEOUT);
	ck_assert_msg(h_now() - t0 < h_slow(1), "timeout 0 waited");
	ck_assert_int_eq(token, -1);
	ck_assert_int_gt(strlen(locks_last_message(c)), 0);

	opts.timeout = 0.3;
	opts.notify_after = 10;
	t0 = h_now();
	ck_assert_int_eq(locks_acquire(c, "ll-to", &opts, &token),
	    LOCKS_E_TIMEOUT);
	ck_assert_msg(h_now() - t0 >= 0.25, "timed out early");
	ck_assert_int_eq(seen.calls, 0);
	ck_assert_int_eq(locks_ping(c), LOCKS_OK);

	/* Shared beside a shared holder is granted at once. */
	opts.mode = LOCKS_SHARED;
	opts.timeout = 0;
	ck_assert_int_eq(locks_acquire(c, "ll-to", &opts, &token), LOCKS_OK);
	ck_assert_int_gt(token, holder.token);
	h_holder_kill(&holder);
	locks_close(c);
}
END_TEST

START_TEST(test_liblocks_release_and_refusals)
{
	struct locks_acquire_opts	 opts = LOCKS_ACQUIRE_OPTS_INIT;
	locks_conn			*c = h_lib_conn("ll-rel");
	char				*owner;
	int64_t				 token = 0;

	ck_assert_int_eq(locks_acquire(c, "ll-rel", NULL, &token), LOCKS_OK);
	ck_assert_int_eq(locks_acquire(c, "ll-rel", NULL, NULL),
	    LOCKS_E_ALREADY_HELD);
	ck_assert_int_gt(strlen(locks_last_message(c)), 0);
	ck_assert_int_eq(locks_release(c, "ll-rel"), LOCKS_OK);
	ck_assert_int_eq(locks_release(c, "ll-rel"), LOCKS_E_NOT_HELD);
	/* A name with a '/' is a path, opened here: a/ does not exist. */
	ck_assert_int_eq(locks_acquire(c, "a/b", NULL, NULL), LOCKS_E_OPEN);
	ck_assert_int_eq(locks_release(c, ".."), LOCKS_E_INVALID_NAME);
	ck_assert_int_eq(locks_acquire(NULL, "ll-rel", NULL, NULL),
	    LOCKS_E_INVAL);

	owner = h_filled(257, 'o');
	opts.owner = owner;
	ck_assert_int_eq(locks_acquire(c, "ll-rel", &opts, NULL),
	    LOCKS_E_INVAL);
	owner[256] = '\0';
	ck_assert_int_eq(locks_acquire(c, "ll-rel", &opts, NULL), LOCKS_OK);
	free(owner);
	opts.owner = NULL;
	opts.timeout = NAN;
	ck_assert_int_eq(locks_acquire(c, "ll-rel2", &opts, NULL),
	    LOCKS_E_INVAL);
	opts.timeout = -1;
	opts.notify_after = -1;
	ck_assert_int_eq(locks_acquire(c, "ll-rel2", &opts, NULL),
	    LOCKS_E_INVAL);
	opts.notify_after = 0;
	opts.mode = (enum locks_mode)7;
	ck_assert_int_eq(locks_acquire(c, "ll-rel2", &opts, NULL),
	    LOCKS_E_INVAL);
	ck_assert_int_eq(locks_ping(c), LOCKS_OK);
	locks_close(c);
}
END_TEST

START_TEST(test_liblocks_name_valid_follows_the_name_rules)
{
	static const char	*good[] = { "a", "db", "Ab9._:@+-z", "a..b",
	    "x.", "1" };
	static const char	*bad[] = { "", ".", "..", ".x", "a/b", "/etc",
	    "a b", "caf\xc3\xa9", "a*", "x\n", "tab\there" };
	char			*name;
	size_t			 i;

	for (i = 0; i < sizeof good / sizeof good[0]; i++)
		ck_assert_msg(locks_name_valid(good[i]), "refused %s",
		    good[i]);
	for (i = 0; i < sizeof bad / sizeof bad[0]; i++)
		ck_assert_msg(!locks_name_valid(bad[i]), "accepted \"%s\"",
		    bad[i]);
	name = h_filled(201, 'n');
	ck_assert(!locks_name_valid(name));
	name[200] = '\0';
	ck_assert(locks_name_valid(name));
	free(name);
}
END_TEST

START_TEST(test_liblocks_list_accessors)
{
	struct h_holder		 holder;
	struct h_conn		*w = h_connect_hello("ll-w-client");
	locks_conn		*c = h_lib_conn("ll-lister");
	locks_list		*list = NULL;
	const locks_lock	*lock;
	const locks_holder	*h;
	struct json_object	*json;
	size_t			 i;
	int			 found = 0;

	ck_assert_msg(h_holder_spawn(&holder, h_srv.socket_path, "ll-list",
	    LOCKS_EXCLUSIVE, "ll-h-client", "ll-h-owner") == 0, "%s",
	    h_error());
	h_queue(w, "ll-list", "shared", 1, "ll-w-owner");

	ck_assert_int_eq(locks_list_get(c, "ll-list", &list), LOCKS_OK);
	ck_assert_int_eq(locks_list_count(list), 1);
	lock = locks_list_lock(list, 0);
	ck_assert_ptr_nonnull(lock);
	ck_assert_ptr_null(locks_list_lock(list, 1));
	ck_assert_str_eq(locks_lock_name(lock), "ll-list");
	ck_assert_int_eq(locks_lock_nholders(lock), 1);
	h = locks_lock_holder(lock, 0);
	ck_assert_int_eq(locks_holder_pid(h), holder.pid);
	ck_assert_int_eq(locks_holder_uid(h), getuid());
	ck_assert_int_eq(locks_holder_gid(h), getgid());
	ck_assert_str_eq(locks_holder_client(h), "ll-h-client");
	ck_assert_str_eq(locks_holder_owner(h), "ll-h-owner");
	ck_assert_int_eq(locks_holder_mode(h), LOCKS_EXCLUSIVE);
	ck_assert_int_eq(locks_holder_token(h), holder.token);
	ck_assert_int_eq(locks_holder_external(h), 0);
	ck_assert(locks_holder_since(h) > h_wall_now() - 60);
	ck_assert_int_eq(locks_lock_nwaiters(lock), 1);
	h = locks_lock_waiter(lock, 0);
	ck_assert_ptr_null(locks_lock_waiter(lock, 1));
	ck_assert_int_eq(locks_holder_pid(h), getpid());
	ck_assert_str_eq(locks_holder_client(h), "ll-w-client");
	ck_assert_str_eq(locks_holder_owner(h), "ll-w-owner");
	ck_assert_int_eq(locks_holder_mode(h), LOCKS_SHARED);
	ck_assert_int_eq(locks_holder_token(h), 0);
	ck_assert(locks_holder_since(h) > h_wall_now() - 60);

	json = json_tokener_parse(locks_list_json(list));
	ck_assert_msg(json != NULL && h_ok(json), "list json: %s",
	    locks_list_json(list));
	ck_assert_ptr_nonnull(strstr(locks_list_json(list), "\"ll-list\""));
	json_object_put(json);
	locks_list_free(list);

	list = NULL;
	ck_assert_int_eq(locks_list_get(c, NULL, &list), LOCKS_OK);
	for (i = 0; i < locks_list_count(list); i++) {
		lock = locks_list_lock(list, i);
		if (strcmp(locks_lock_name(lock), "ll-list") == 0)
			found++;
		if (i > 0)
			ck_assert(strcmp(locks_lock_name(locks_list_lock(list,
			    i - 1)), locks_lock_name(lock)) < 0);
	}
	ck_assert_int_eq(found, 1);
	locks_list_free(list);

	list = NULL;
	ck_assert_int_eq(locks_list_get(c, "ll-none", &list), LOCKS_OK);
	ck_assert_int_eq(locks_list_count(list), 0);
	locks_list_free(list);
	locks_list_free(NULL);
	/* A path with no file behind it is locked by nobody. */
	ck_assert_int_eq(locks_list_get(c, "a/b", &list), LOCKS_OK);
	ck_assert_int_eq(locks_list_count(list), 0);
	locks_list_free(list);
	h_holder_kill(&holder);
	locks_close(c);
}
END_TEST

/* LOCKS_LIST_ALL adds files held only outside the broker; no other flag. */
START_TEST(test_liblocks_list_all_shows_outside_only_files)
{
	locks_conn		*c = h_lib_conn("ll-all");
	locks_list		*list = NULL;
	const locks_lock	*lock;
	char			 path[256];
	int			 fd;

	snprintf(path, sizeof path, "%s/ll-outside", h_srv.lock_dir);
	fd = open(path, O_RDONLY | O_CREAT | O_CLOEXEC, 0644);
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(flock(fd, LOCK_EX | LOCK_NB), 0);

	ck_assert_int_eq(locks_list_query(c, "ll-outside", 0, &list),
	    LOCKS_OK);
	ck_assert_int_eq(locks_list_count(list), 0);
	locks_list_free(list);

	list = NULL;
	ck_assert_int_eq(locks_list_query(c, "ll-outside", LOCKS_LIST_ALL,
	    &list), LOCKS_OK);
	ck_assert_int_eq(locks_list_count(list), 1);
	lock = locks_list_lock(list, 0);
	ck_assert_str_eq(locks_lock_name(lock), "ll-outside");
	ck_assert_int_eq(locks_lock_nholders(lock), 1);
	ck_assert(locks_holder_external(locks_lock_holder(lock, 0)));
	ck_assert_int_eq(locks_holder_pid(locks_lock_holder(lock, 0)),
	    getpid());
	locks_list_free(list);

	ck_assert_int_eq(locks_list_query(c, NULL, 0x8, &list),
	    LOCKS_E_INVAL);
	close(fd);
	locks_close(c);
}
END_TEST

START_TEST(test_liblocks_status_accessors)
{
	locks_conn		*c = h_lib_conn("ll-status");
	locks_status		*st = NULL;
	struct json_object	*json;
	struct h_conn		*raw = h_connect();
	struct json_object	*hello;

	hello = h_request(raw, "{\"op\":\"hello\"}");
	ck_assert_int_eq(locks_acquire(c, "ll-st", NULL, NULL), LOCKS_OK);
	ck_assert_int_eq(locks_status_get(c, &st), LOCKS_OK);
	ck_assert_str_eq(locks_status_version(st), h_str(hello, "version"));
	ck_assert(locks_status_uptime(st) >= 0);
	ck_assert_int_ge(locks_status_connections(st), 2);
	ck_assert_int_ge(locks_status_locks_held(st), 1);
	ck_assert_int_ge(locks_status_waiters(st), 0);
	ck_assert_int_ge(locks_status_acquired_total(st),
	    locks_status_locks_held(st));
	json = json_tokener_parse(locks_status_json(st));
	ck_assert_msg(json != NULL && h_ok(json), "status json: %s",
	    locks_status_json(st));
	ck_assert_int_eq(h_int(json, "acquired_total"),
	    locks_status_acquired_total(st));
	json_object_put(json);
	locks_status_free(st);
	locks_status_free(NULL);
	locks_close(c);
}
END_TEST

START_TEST(test_liblocks_names_every_error)
{
	static const struct {
		int		 error;
		const char	*code;
	} proto[] = {
		{ LOCKS_E_BAD_JSON, "bad_json" },
		{ LOCKS_E_BAD_REQUEST, "bad_request" },
		{ LOCKS_E_UNKNOWN_OP, "unknown_op" },
		{ LOCKS_E_INVALID_NAME, "invalid_name" },
		{ LOCKS_E_ALREADY_HELD, "already_held" },
		{ LOCKS_E_NOT_HELD, "not_held" },
		{ LOCKS_E_TIMEOUT, "timeout" },
		{ LOCKS_E_CANCELLED, "cancelled" },
		{ LOCKS_E_TOO_LARGE, "too_large" },
		{ LOCKS_E_LIMIT, "limit" },
		{ LOCKS_E_PERMISSION_DENIED, "permission_denied" },
		{ LOCKS_E_INTERNAL, "internal" },
	};
	static const int	 own[] = { LOCKS_E_CONNECT, LOCKS_E_LOST,
	    LOCKS_E_PROTOCOL, LOCKS_E_NOMEM, LOCKS_E_INVAL,
	    LOCKS_E_UNTRUSTED };
	const char		*codes[32], *texts[32];
	size_t			 i, j, n = 0;

	for (i = 0; i < sizeof proto / sizeof proto[0]; i++) {
		ck_assert_str_eq(locks_error_code(proto[i].error),
		    proto[i].code);
		codes[n] = locks_error_code(proto[i].error);
		texts[n++] = locks_strerror(proto[i].error);
	}
	for (i = 0; i < sizeof own / sizeof own[0]; i++) {
		codes[n] = locks_error_code(own[i]);
		texts[n++] = locks_strerror(own[i]);
	}
	for (i = 0; i < n; i++) {
		ck_assert_int_gt(strlen(codes[i]), 0);
		ck_assert_int_gt(strlen(texts[i]), 0);
		ck_assert_str_ne(texts[i], locks_strerror(-999));
		for (j = 0; j < i; j++) {
			ck_assert_str_ne(codes[i], codes[j]);
			ck_assert_str_ne(texts[i], texts[j]);
		}
	}
	ck_assert_int_gt(strlen(locks_strerror(LOCKS_OK)), 0);
}
END_TEST

START_TEST(test_liblocks_connect_to_missing_socket_fails)
{
	locks_conn	*c = (locks_conn *)&c;
	char		 path[PATH_MAX];

	snprintf(path, sizeof path, "%s/no-such.sock", h_run_dir());
	ck_assert_int_eq(locks_connect(path, "x", &c), LOCKS_E_CONNECT);
	ck_assert_ptr_eq(c, (locks_conn *)&c);
	ck_assert_msg(strstr(locks_last_message(NULL), path) != NULL,
	    "message does not name the socket: %s",
	    locks_last_message(NULL));
}
END_TEST

START_TEST(test_liblocks_uses_locks_socket_when_path_is_null)
{
	locks_conn	*c = NULL;
	char		 buf[PATH_MAX];

	ck_assert_msg(h_srv.pid > 0, "locksd did not start");
	setenv("LOCKS_SOCKET", h_srv.socket_path, 1);
	ck_assert_int_eq(locks_default_socket(buf, sizeof buf),
	    (int)strlen(h_srv.socket_path));
	ck_assert_str_eq(buf, h_srv.socket_path);
	ck_assert_int_eq(locks_connect(NULL, "env", &c), LOCKS_OK);
	ck_assert_str_eq(locks_socket_path(c), h_srv.socket_path);
	ck_assert_int_eq(locks_ping(c), LOCKS_OK);
	locks_close(c);
}
END_TEST

/* Compare the library's default socket path with the daemon's and want. */
static int
default_socket_is(const char *want)
{
	char	 lib[PATH_MAX], daemon[PATH_MAX];

	locks_default_socket(lib, sizeof lib);
	proto_default_socket(daemon, sizeof daemon);
	if (strcmp(lib, daemon) != 0) {
		fprintf(stderr, "liblocks says %s, locksd says %s\n", lib,
		    daemon);
		return 0;
	}
	if (want != NULL && strcmp(lib, want) != 0) {
		fprintf(stderr, "default socket %s, not %s\n", lib, want);
		return 0;
	}
	return 1;
}

START_TEST(test_default_socket_path_follows_the_documented_order)
{
	pid_t	 pid;
	int	 status, bad = 0;

	setenv("LOCKS_SOCKET", "/x/y.sock", 1);
	setenv("XDG_RUNTIME_DIR", "/xdg", 1);
	ck_assert(default_socket_is("/x/y.sock"));
	unsetenv("LOCKS_SOCKET");
	if (getuid() != 0) {
		ck_assert(default_socket_is(NULL));
		return;
	}
	ck_assert(default_socket_is("/run/locksd/locksd.sock"));

	/* The rest of the rule is for users other than root. */
	pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		if (setgid(65534) == -1 || setuid(65534) == -1)
			_exit(100);
		bad += !default_socket_is("/xdg/locksd/locksd.sock");
		unsetenv("XDG_RUNTIME_DIR");
		bad += !default_socket_is("/tmp/locksd-65534/locksd.sock");
		setenv("XDG_RUNTIME_DIR", "", 1);
		bad += !default_socket_is("/tmp/locksd-65534/locksd.sock");
		/* Not in the rule, but client and daemon must agree. */
		setenv("XDG_RUNTIME_DIR", "relative/dir", 1);
		bad += !default_socket_is(NULL);
		_exit(bad);
	}
	ck_assert_int_eq(waitpid(pid, &status, 0), pid);
	ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0,
	    "%d case(s) differ (see stderr)", WEXITSTATUS(status));
}
END_TEST

/* What the on_contended callback saw. */
struct contended_seen {
	int		 calls;
	char		 name[64];
	int		 waiters;
	pid_t		 pid;
	char		 client[64];
	char		 owner[64];
	enum locks_mode	 mode;
	int64_t		 token;
	locks_conn	*conn;		/* pinged from the callback */
	int		 ping;
};

static void
on_contended(const char *name, int waiters, const locks_holder *first,
    void *arg)
{
	struct contended_seen	*seen = arg;

	seen->calls++;
	snprintf(seen->name, sizeof seen->name, "%s", name);
	seen->waiters = waiters;
	seen->pid = locks_holder_pid(first);
	snprintf(seen->client, sizeof seen->client, "%s",
	    locks_holder_client(first));
	snprintf(seen->owner, sizeof seen->owner, "%s",
	    locks_holder_owner(first));
	seen->mode = locks_holder_mode(first);
	seen->token = locks_holder_token(first);
	if (seen->conn != NULL)
		seen->ping = locks_ping(seen->conn);
}

/* Call locks_check until the callback ran calls times, or 5 s pass. */
static void
check_until(locks_conn *c, const struct contended_seen *seen, int calls)
{
	int	 i;

	for (i = 0; i < 500 && seen->calls < calls; i++) {
		ck_assert_int_eq(locks_check(c), LOCKS_OK);
		if (seen->calls < calls)
			h_sleep(0.01);
	}
}

START_TEST(test_liblocks_on_contended_hears_of_the_first_waiter)
{
	struct locks_acquire_opts	 opts = LOCKS_ACQUIRE_OPTS_INIT;
	struct contended_seen		 seen;
	struct h_conn			*w;
	locks_conn			*c = NULL;

	memset(&seen, 0, sizeof seen);
	opts.on_contended = on_contended;
	opts.arg = &seen;
	ck_assert_int_eq(locks_connect(h_srv.socket_path, "holder", &c),
	    LOCKS_OK);
	ck_assert_int_eq(locks_acquire(c, "ll-cont", &opts, NULL), LOCKS_OK);
	ck_assert_int_eq(locks_check(c), LOCKS_OK);
	ck_assert_int_eq(seen.calls, 0);
	ck_assert_ptr_nonnull(w = h_conn_open(h_srv.socket_path));
	ck_assert_int_eq(h_send(w, "{\"id\":1,\"op\":\"hello\","
	    "\"client\":\"waiter\"}"), 0);
	ck_assert(h_ok(h_recv(w, 5)));
	ck_assert_int_eq(h_send(w, "{\"id\":2,\"op\":\"acquire\","
	    "\"name\":\"ll-cont\",\"owner\":\"job\",\"mode\":\"shared\","
	    "\"notify_after\":1e9}"), 0);
	check_until(c, &seen, 1);
	ck_assert_int_eq(seen.calls, 1);
	ck_assert_str_eq(seen.name, "ll-cont");
	ck_assert_int_eq(seen.waiters, 1);
	ck_assert_int_eq(seen.pid, getpid());
	ck_assert_str_eq(seen.client, "waiter");
	ck_assert_str_eq(seen.owner, "job");
	ck_assert_int_eq(seen.mode, LOCKS_SHARED);
	ck_assert_int_eq(seen.token, 0);
	ck_assert_int_eq(locks_release(c, "ll-cont"), LOCKS_OK);
	ck_assert(h_ok(h_recv(w, 5)));
	h_conn_close(w);
	locks_close(c);
}
END_TEST

START_TEST(test_liblocks_on_contended_refuses_requests_from_inside)
{
	struct locks_acquire_opts	 opts = LOCKS_ACQUIRE_OPTS_INIT;
	struct contended_seen		 seen;
	locks_conn			*c = NULL, *w = NULL;
	struct h_conn			*q;
	int				 fd;

	memset(&seen, 0, sizeof seen);
	opts.on_contended = on_contended;
	opts.arg = &seen;
	ck_assert_int_eq(locks_connect(h_srv.socket_path, "holder", &c),
	    LOCKS_OK);
	seen.conn = c;
	seen.ping = 1;
	ck_assert_int_eq(locks_acquire(c, "ll-cont2", &opts, NULL),
	    LOCKS_OK);
	ck_assert_int_eq(locks_connect(h_srv.socket_path, "w", &w), LOCKS_OK);
	/* A try-once waiter never queues: nobody is told. */
	opts.timeout = 0;
	opts.on_contended = NULL;
	ck_assert_int_eq(locks_acquire(w, "ll-cont2", &opts, NULL),
	    LOCKS_E_TIMEOUT);
	ck_assert_int_eq(seen.calls, 0);
	/* A waiter's event, read within a later request on c. */
	ck_assert_ptr_nonnull(q = h_conn_open(h_srv.socket_path));
	ck_assert_int_eq(h_send(q, "{\"id\":2,\"op\":\"acquire\","
	    "\"name\":\"ll-cont2\",\"notify_after\":1e9}"), 0);
	h_sleep(0.3);
	ck_assert_int_eq(locks_ping(c), LOCKS_OK);
	check_until(c, &seen, 1);
	ck_assert_int_eq(seen.calls, 1);
	ck_assert_int_eq(seen.ping, LOCKS_E_INVAL);
	ck_assert_int_eq(locks_ping(c), LOCKS_OK);
	/* The descriptor form is handed over: it cannot ask. */
	ck_assert_int_ge(fd = open("/dev/null", O_RDONLY), 0);
	opts.on_contended = on_contended;
	ck_assert_int_eq(locks_acquire_fd(w, fd, &opts, NULL), LOCKS_E_INVAL);
	ck_assert_ptr_nonnull(strstr(locks_last_message(w), "on_contended"));
	close(fd);
	h_conn_close(q);
	locks_close(w);
	locks_close(c);
}
END_TEST

/*
 * When the daemon dies.
 */

/* Wait (5 s at most) until list shows an upgrade of name waiting. */
static void
wait_until_converting(locks_conn *c, const char *name)
{
	locks_list	*list;
	int		 i, seen = 0;

	for (i = 0; i < 500 && !seen; i++) {
		ck_assert_int_eq(locks_list_get(c, name, &list), LOCKS_OK);
		seen = strstr(locks_list_json(list),
		    "\"converting\":\"exclusive\"") != NULL;
		locks_list_free(list);
		if (!seen)
			h_sleep(0.01);
	}
	ck_assert_msg(seen, "no upgrade of %s shows in list", name);
}

/*
 * locks_convert: a downgrade keeps the token; an upgrade under another
 * shared holder times out (still held shared); with the other holder's
 * upgrade waiting, a second is LOCKS_E_DEADLOCK; a lone upgrade holds at
 * once with a higher token; converting what is not held is
 * LOCKS_E_NOT_HELD, and a bad mode LOCKS_E_INVAL.
 */
START_TEST(test_liblocks_convert_down_and_up)
{
	struct h_conn	*w;
	locks_conn	*a = NULL;
	int64_t		 token, now;

	ck_assert_int_eq(locks_connect(h_srv.socket_path, "a", &a), LOCKS_OK);
	ck_assert_int_eq(locks_convert(a, "ll-conv", LOCKS_SHARED, -1, NULL),
	    LOCKS_E_NOT_HELD);
	ck_assert_int_eq(locks_acquire(a, "ll-conv", NULL, &token), LOCKS_OK);
	ck_assert_int_eq(locks_convert(a, "ll-conv", LOCKS_SHARED, -1, &now),
	    LOCKS_OK);
	ck_assert_int_eq(now, token);
	ck_assert_ptr_nonnull(w = h_conn_open(h_srv.socket_path));
	ck_assert_int_eq(h_send(w, "{\"id\":1,\"op\":\"acquire\","
	    "\"name\":\"ll-conv\",\"mode\":\"shared\"}"), 0);
	ck_assert(h_ok(h_recv(w, 5)));
	ck_assert_int_eq(locks_convert(a, "ll-conv", LOCKS_EXCLUSIVE, 0.2,
	    &now), LOCKS_E_TIMEOUT);
	ck_assert(locks_held(a, "ll-conv"));
	/* w's upgrade waits on a's hold: a's own would wait on w's. */
	ck_assert_int_eq(h_send(w, "{\"id\":2,\"op\":\"convert\","
	    "\"name\":\"ll-conv\",\"mode\":\"exclusive\"}"), 0);
	wait_until_converting(a, "ll-conv");
	ck_assert_int_eq(locks_convert(a, "ll-conv", LOCKS_EXCLUSIVE, -1,
	    &now), LOCKS_E_DEADLOCK);
	ck_assert_ptr_nonnull(strstr(locks_last_message(a), "ll-conv"));
	ck_assert(locks_held(a, "ll-conv"));
	ck_assert_int_eq(locks_release(a, "ll-conv"), LOCKS_OK);
	ck_assert(h_ok(h_recv(w, 5)));		/* w's upgrade holds */
	h_conn_close(w);
	ck_assert_int_eq(locks_acquire(a, "ll-conv2", NULL, &token), LOCKS_OK);
	ck_assert_int_eq(locks_convert(a, "ll-conv2", LOCKS_SHARED, 0, NULL),
	    LOCKS_OK);
	ck_assert_int_eq(locks_convert(a, "ll-conv2", LOCKS_EXCLUSIVE, 0,
	    &now), LOCKS_OK);
	ck_assert_int_gt(now, token);
	ck_assert_int_eq(locks_convert(a, "ll-conv2", (enum locks_mode)7, -1,
	    NULL), LOCKS_E_INVAL);
	locks_close(a);
}
END_TEST

START_TEST(test_liblocks_reports_a_lost_connection)
{
	struct h_daemon	 d;
	locks_conn	*c = NULL;

	memset(&d, 0, sizeof d);
	ck_assert_msg(h_daemon_start(&d) == 0, "%s", h_error());
	ck_assert_int_eq(locks_connect(d.socket_path, "lost", &c), LOCKS_OK);
	ck_assert_int_eq(locks_acquire(c, "lost-x", NULL, NULL), LOCKS_OK);
	h_daemon_kill(&d);
	ck_assert_int_eq(locks_ping(c), LOCKS_E_LOST);
	ck_assert_int_gt(strlen(locks_last_message(c)), 0);
	/* The connection stays unusable. */
	ck_assert_int_eq(locks_ping(c), LOCKS_E_LOST);
	locks_close(c);
}
END_TEST

/*
 * detect_deadlock: c holds x; another connection holds y and waits for
 * x; c's wait for y would close the cycle, so it fails at once, naming
 * both locks, and c keeps x.  The descriptor form cannot ask.
 */
START_TEST(test_liblocks_detect_deadlock_fails_a_closing_wait)
{
	struct locks_acquire_opts	 opts = LOCKS_ACQUIRE_OPTS_INIT;
	struct h_conn			*w;
	locks_conn			*c = NULL;
	const char			*msg;
	int				 fd;

	ck_assert_int_eq(locks_connect(h_srv.socket_path, "dl", &c), LOCKS_OK);
	ck_assert_int_eq(locks_acquire(c, "ll-dl-x", NULL, NULL), LOCKS_OK);
	ck_assert_ptr_nonnull(w = h_conn_open(h_srv.socket_path));
	ck_assert_int_eq(h_send(w, "{\"id\":1,\"op\":\"acquire\","
	    "\"name\":\"ll-dl-y\"}"), 0);
	ck_assert(h_ok(h_recv(w, 5)));
	ck_assert_int_eq(h_send(w, "{\"id\":2,\"op\":\"acquire\","
	    "\"name\":\"ll-dl-x\",\"notify_after\":1e9}"), 0);
	h_sleep(0.3);
	opts.detect_deadlock = 1;
	ck_assert_int_eq(locks_acquire(c, "ll-dl-y", &opts, NULL),
	    LOCKS_E_DEADLOCK);
	msg = locks_last_message(c);
	ck_assert_ptr_nonnull(strstr(msg, "waits for ll-dl-y"));
	ck_assert_ptr_nonnull(strstr(msg, "waits for ll-dl-x"));
	ck_assert_int_eq(locks_held(c, "ll-dl-x"), 1);
	ck_assert_int_eq(locks_held(c, "ll-dl-y"), 0);
	/* Without asking, the same wait would wait: try once shows it. */
	opts.detect_deadlock = 0;
	opts.timeout = 0;
	ck_assert_int_eq(locks_acquire(c, "ll-dl-y", &opts, NULL),
	    LOCKS_E_TIMEOUT);
	ck_assert_int_ge(fd = open("/dev/null", O_RDONLY), 0);
	opts.detect_deadlock = 1;
	ck_assert_int_eq(locks_acquire_fd(c, fd, &opts, NULL), LOCKS_E_INVAL);
	ck_assert_ptr_nonnull(strstr(locks_last_message(c),
	    "detect_deadlock"));
	close(fd);
	ck_assert_int_eq(locks_release(c, "ll-dl-x"), LOCKS_OK);
	ck_assert(h_ok(h_recv(w, 5)));
	h_conn_close(w);
	locks_close(c);
}
END_TEST

static Suite *
api_suite(void)
{
	Suite	*s = suite_create("api");
	TCase	*tc;

	tc = h_daemon_tcase("liblocks", 60);
	tcase_add_test(tc,
	    test_liblocks_connect_without_label_uses_program_name);
	tcase_add_test(tc,
	    test_liblocks_acquire_reports_holders_to_on_blocking);
	tcase_add_test(tc, test_liblocks_acquire_times_out_and_tries_once);
	tcase_add_test(tc, test_liblocks_release_and_refusals);
	tcase_add_test(tc, test_liblocks_name_valid_follows_the_name_rules);
	tcase_add_test(tc, test_liblocks_list_accessors);
	tcase_add_test(tc, test_liblocks_list_all_shows_outside_only_files);
	tcase_add_test(tc, test_liblocks_status_accessors);
	tcase_add_test(tc, test_liblocks_names_every_error);
	tcase_add_test(tc, test_liblocks_connect_to_missing_socket_fails);
	tcase_add_test(tc, test_liblocks_uses_locks_socket_when_path_is_null);
	tcase_add_test(tc,
	    test_default_socket_path_follows_the_documented_order);
	tcase_add_test(tc,
	    test_liblocks_on_contended_hears_of_the_first_waiter);
	tcase_add_test(tc,
	    test_liblocks_on_contended_refuses_requests_from_inside);
	tcase_add_test(tc, test_liblocks_convert_down_and_up);
	tcase_add_test(tc, test_liblocks_detect_deadlock_fails_a_closing_wait);
	suite_add_tcase(s, tc);

	/* This one kills its daemon, so it starts one of its own. */
	tc = h_tcase("lost", 60);
	tcase_add_test(tc, test_liblocks_reports_a_lost_connection);
	suite_add_tcase(s, tc);
	return s;
}

/* The tests run forked: see harness.h. */
int
main(void)
{
	return h_run_suite(api_suite());
}
