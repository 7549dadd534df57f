/*
 * The integration test harness: a real locksd on a temporary socket, raw
 * protocol connections, helper processes and shell commands.
 *
 * Harness functions never call ck_assert, so they work in Check's
 * unchecked fixtures (which run in the runner's own process) as well as in
 * tests.  They return -1 or NULL on failure and leave a message for
 * h_error().  The exceptions are the Check glue at the end (the EXPECT_*
 * macros and the functions under "For tests only"), which assert and so
 * belong in tests alone.
 *
 * Why a shared daemon lives in an unchecked fixture: Check runs each test
 * in a forked child, and in that mode a checked teardown does not run at
 * all after a failed test, which would leave the daemon running.
 * Unchecked fixtures run in the runner process itself, once per TCase, so
 * one daemon (h_srv) serves a whole TCase and is stopped (and its exit
 * checked) even when tests fail; h_run_suite counts such fixture failures
 * as failures.  Tests therefore share a daemon: each uses lock names of
 * its own, and every connection a test opens dies with its forked child,
 * which is itself the broker's guarantee.  Tests that need a daemon to
 * themselves start one inside the test; the harness makes it die with the
 * test's process.
 */
#ifndef LOCKS_TEST_HARNESS_H
#define LOCKS_TEST_HARNESS_H

#include <sys/resource.h>
#include <sys/queue.h>
#include <sys/types.h>

#include <limits.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <check.h>
#include <json-c/json.h>

#include "locks.h"

#ifndef LOCKSD_PATH
#define LOCKSD_PATH "locksd"
#endif
#ifndef TEST_TMPDIR
#define TEST_TMPDIR "/tmp"
#endif

/* How long a daemon may take to listen or to exit, in seconds. */
#define H_START_SECS	5.0
#define H_SLOW_SECS	60.0	/* the same under $LOCKSD_WRAPPER */
/*
 * How long after an outside flock changes list is sure to show it: the
 * daemon reads /proc/locks at most every 100 ms (PROTOCOL.md).
 */
#define H_OUTSIDE_STALE_SECS	0.15
/* How long to wait for a reply that must come. */
#define H_REPLY_SECS	5.0
/* Tokens are integers below 2^53, which a JSON double holds exactly. */
#define H_MAX_SAFE_INTEGER	9007199254740992LL

/* One locksd process and its files. */
struct h_daemon {
	pid_t		 pid;		/* 0 when not running */
	char		 dir[128];	/* everything lives here */
	char		 socket_path[108];
	char		 lock_dir[160];	/* <dir>/locks */
	char		 log_path[160];	/* its stderr */
	rlim_t		 nofile;	/* RLIMIT_NOFILE; 0: inherit */
	int		 env_only;	/* use $LOCKS_SOCKET, no options */
	uid_t		 uid;		/* run as uid and gid (0: as we are) */
	gid_t		 gid;
	const char	*extra[4];	/* more options; NULL ends */
};

/* A raw protocol connection that reads one JSON line at a time. */
struct h_conn {
	int			 fd;
	char			*buf;
	size_t			 len;
	size_t			 cap;
	struct json_tokener	*tok;
	struct json_object	**objs;	/* freed at close */
	size_t			 nobjs;
	TAILQ_ENTRY(h_conn)	 entry;	/* every open connection */
};

/* A process outside the test that holds a lock through liblocks. */
struct h_holder {
	pid_t		 pid;
	int		 ctl;	/* closing it makes the holder let go */
	int64_t		 token;
};

/*
 * A flock(1) process outside the broker holding a file until told: pid is
 * flock(1)'s own, the pid /proc/locks shows for the lock.
 */
struct h_flock {
	pid_t		 pid;
	int		 ctl;	/* closing it makes flock(1) let go and exit */
};

/* harness.c */
const char	*h_error(void);
double		 h_now(void);
double		 h_wall_now(void);
double		 h_slow(double);
void		 h_sleep(double);
int		 h_init(void);
const char	*h_run_dir(void);
void		 h_finish(int);

int		 h_daemon_paths(struct h_daemon *, const char *);
int		 h_daemon_start(struct h_daemon *);
int		 h_daemon_start_in(struct h_daemon *, const char *);
int		 h_daemon_start_as(struct h_daemon *, uid_t, const char *,
		    mode_t);
int		 h_daemon_restart(struct h_daemon *);
pid_t		 h_daemon_spawn(const struct h_daemon *);
int		 h_daemon_wait_ready(struct h_daemon *, pid_t);
int		 h_daemon_stop(struct h_daemon *);
int		 h_daemon_signal_stop(struct h_daemon *, int);
void		 h_daemon_kill(struct h_daemon *);
int		 h_wait_exit(pid_t, double, int *);
pid_t		 h_spawn_report(void (*)(int, const void *), const void *,
		    void *, size_t);
void		 h_daemon_dump_log(const struct h_daemon *);

int		 h_unix_connect(const char *);
struct h_conn	*h_conn_open(const char *);
void		 h_conn_close(struct h_conn *);
void		 h_conn_close_all(void);
int		 h_send_raw(struct h_conn *, const void *, size_t);
void		 h_send_with_fds(struct h_conn *, const char *, const int *,
		    size_t);
int		 h_send(struct h_conn *, const char *, ...)
		    __attribute__((format(printf, 2, 3)));
struct json_object *h_recv(struct h_conn *, double);
struct json_object *h_request(struct h_conn *, const char *, ...)
		    __attribute__((format(printf, 2, 3)));
int		 h_recv_closed(struct h_conn *, double);
int		 h_quiet(struct h_conn *, double);

struct json_object *h_get(struct json_object *, const char *);
struct json_object *h_idx(struct json_object *, size_t);
size_t		 h_len(struct json_object *, const char *);
int		 h_is(struct json_object *, const char *, json_type);
const char	*h_str(struct json_object *, const char *);
int64_t		 h_int(struct json_object *, const char *);
double		 h_num(struct json_object *, const char *);
int		 h_ok(struct json_object *);
int		 h_is_event(struct json_object *, const char *);
const char	*h_err(struct json_object *);
const char	*h_json(struct json_object *);

int		 h_holder_spawn(struct h_holder *, const char *,
		    const char *, enum locks_mode, const char *, const char *);
int		 h_holder_spawn_as(struct h_holder *, uid_t, gid_t,
		    const char *, const char *, enum locks_mode, const char *,
		    const char *);
int		 h_holder_release(struct h_holder *);
int		 h_holder_kill(struct h_holder *);

int		 h_system(const char *, ...)
		    __attribute__((format(printf, 1, 2)));
int		 h_slurp(const char *, char *, size_t);
int		 h_file_mode(const char *, const char *);

int		 h_flock_spawn(struct h_flock *, const char *, const char *);
int		 h_flock_release(struct h_flock *);
void		 h_flock_kill(struct h_flock *);
int		 h_proc_count(pid_t, const char *);

/* Each macro evaluates its message argument once: it may be a read. */
#define EXPECT_OK(r) do {						\
	struct json_object *r_ = (r);					\
	ck_assert_msg(h_ok(r_), "expected ok:true, got %s", h_json(r_)); \
} while (0)
#define EXPECT_ERROR(r, code) do {					\
	struct json_object *r_ = (r);					\
	ck_assert_msg(h_err(r_) != NULL && strcmp(h_err(r_), (code)) == 0, \
	    "expected error %s, got %s", (code), h_json(r_));		\
} while (0)
#define EXPECT_BLOCKING(r) do {						\
	struct json_object *r_ = (r);					\
	ck_assert_msg(h_is_event(r_, "blocking"),			\
	    "expected a blocking event, got %s", h_json(r_));		\
} while (0)
#define EXPECT_ID(r, want) do {						\
	struct json_object *r_ = (r);					\
	ck_assert_msg(h_int(r_, "id") == (want),			\
	    "expected id %lld, got %s", (long long)(want), h_json(r_));	\
} while (0)
#define EXPECT_NULL_ID(r) do {						\
	struct json_object *r_ = (r);					\
	ck_assert_msg(h_is(r_, "id", json_type_null),			\
	    "expected \"id\": null, got %s", h_json(r_));		\
} while (0)
#define EXPECT_LEN(obj, key, n) do {					\
	struct json_object *o_ = (obj);					\
	ck_assert_msg(h_len(o_, (key)) == (n), "%d %s expected: %s",	\
	    (int)(n), (key), h_json(o_));				\
} while (0)
#define EXPECT_QUIET(c, secs)						\
	ck_assert_msg(h_quiet((c), (secs)), "%s", h_error())

/* harness.c: for tests only (these assert) */
extern struct h_daemon	 h_srv;		/* the TCase's or the test's daemon */

void		 h_daemon_setup(void);
void		 h_daemon_teardown(void);
void		 h_own_daemon_start(void);
void		 h_own_daemon_stop(void);
TCase		*h_tcase(const char *, double);
TCase		*h_daemon_tcase(const char *, double);
int		 h_run_suite(Suite *);

struct h_conn	*h_connect_to(const char *);
struct h_conn	*h_connect(void);
struct json_object *h_take(struct h_conn *, const char *, const char *);
void		 h_drop(struct h_conn *, const char *);
struct json_object *h_granted(struct h_conn *, int, double);
struct json_object *h_member(struct json_object *, const char *, size_t);
struct h_conn	*h_connect_hello(const char *);
struct json_object *h_queue(struct h_conn *, const char *, const char *, int,
		    const char *);
struct json_object *h_listed(struct h_conn *, const char *);
char		*h_filled(size_t, char);
int64_t		 h_token_from(struct h_daemon *, const char *);
locks_conn	*h_lib_conn(const char *);

#endif /* LOCKS_TEST_HARNESS_H */
