/*
 * liblocks and the locks CLI against a fake daemon: a process of the
 * test that listens on a Unix socket, answers hello, acquire, release and
 * ping the way locksd does, and says things locksd does not say yet, on
 * cue: events pushed between requests (contended ones, for a lock that
 * did not ask), events during an acquire, a half line, garbage, another
 * protocol version, and a hang-up.  The point is that a client which reads those whenever they
 * come neither spins nor stalls, and still notices a real loss.
 *
 * The fake serves one connection.  It is a forked child that dies with
 * the test (PR_SET_PDEATHSIG), driven by one-byte commands on a pipe.
 */

#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/types.h>
#include <sys/un.h>
#include <sys/wait.h>

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <check.h>

#include "locks.h"
#include "protocol.h"
#include "unit.h"

#ifndef LOCKS_CLI_PATH
#define LOCKS_CLI_PATH "locks"
#endif
#ifndef TEST_TMPDIR
#define TEST_TMPDIR "/tmp"
#endif

#define FAKE_TOKEN	7	/* the token of every grant */
#define FAKE_FLOOD	5000	/* events one 'f' command pushes */
/* CPU a client may burn while it waits a second on a quiet command. */
#define IDLE_CPU_SECS	0.3

/* Commands to the fake, one byte each on its pipe. */
#define CMD_EVENT	'e'	/* push one contended event */
#define CMD_HALF	'p'	/* push the first half of an event */
#define CMD_REST	'r'	/* and its second half, with the LF */
#define CMD_BLANK	'b'	/* push a blank line */
#define CMD_FLOOD	'f'	/* push FAKE_FLOOD events at once */
#define CMD_GARBAGE	'g'	/* push a line that is not JSON */
#define CMD_HANGUP	'h'	/* close the connection and exit */

/* How the fake behaves, beyond answering requests. */
struct fake_script {
	int	 protocol;	/* in the hello reply; -1: leave it out */
	int	 before_grant;	/* push events (and a stray reply) first */
	int	 blocking;	/* send a blocking event before the grant */
	int	 after_grant;	/* events pushed right after a grant */
	int	 every_ms;	/* > 0: after a grant, push this often */
	int	 hangup_ms;	/* > 0: hang up this long after a grant */
	int	 lost_handoffs;	/* descriptor-form acquires to time out */
};

/* A running fake daemon. */
struct fake {
	pid_t	 pid;
	int	 ctl;		/* write end of its command pipe */
	char	 path[108];	/* its socket */
};

static const char event_line[] =
    "{\"event\":\"contended\",\"name\":\"fake-x\",\"waiters\":1}\n";

/* Monotonic seconds. */
static double
now(void)
{
	struct timespec	 ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Write all of buf, or kill the fake: its client is gone. */
static void
fake_write(int fd, const char *buf, size_t len)
{
	ssize_t	 n;

	while (len > 0) {
		if ((n = write(fd, buf, len)) == -1) {
			if (errno == EINTR)
				continue;
			_exit(0);
		}
		buf += n;
		len -= (size_t)n;
	}
}

/* Send one formatted line (or part of one) to the client. */
static void __attribute__((format(printf, 2, 3)))
fake_say(int fd, const char *fmt, ...)
{
	char	 buf[1024];
	va_list	 ap;
	int	 n;

	va_start(ap, fmt);
	n = vsnprintf(buf, sizeof buf, fmt, ap);
	va_end(ap);
	if (n < 0 || (size_t)n >= sizeof buf)
		_exit(4);
	fake_write(fd, buf, (size_t)n);
}

/* Push n contended events in one write. */
static void
fake_events(int fd, int n)
{
	size_t	 len = sizeof event_line - 1;
	char	*buf;
	int	 i;

	if (n <= 0 || (buf = malloc(len * (size_t)n)) == NULL)
		return;
	for (i = 0; i < n; i++)
		memcpy(buf + len * (size_t)i, event_line, len);
	fake_write(fd, buf, len * (size_t)n);
	free(buf);
}

/* Answer an acquire as the script says: events, then the grant. */
static void
fake_acquire(int fd, long long id, const struct fake_script *script)
{
	if (script->before_grant) {
		fake_events(fd, 1);
		fake_say(fd, "{\"id\":null,\"event\":\"contended\"}\n");
		fake_say(fd, "{\"id\":%lld,\"event\":\"contended\","
		    "\"name\":\"fake-x\"}\n", id);
		fake_say(fd, "{\"id\":%lld,\"event\":\"unheard-of\"}\n", id);
		fake_say(fd, "{\"id\":999999,\"ok\":true}\n\n");
	}
	if (script->blocking)
		fake_say(fd, "{\"id\":%lld,\"event\":\"blocking\",\"name\":"
		    "\"fake-x\",\"holders\":[{\"pid\":4242,\"uid\":1,"
		    "\"gid\":1,\"client\":\"other\",\"owner\":\"job\","
		    "\"mode\":\"shared\",\"since\":1.5,\"token\":3}],"
		    "\"position\":2}\n", id);
	fake_say(fd, "{\"id\":%lld,\"ok\":true,\"name\":\"fake-x\",\"mode\":"
	    "\"exclusive\",\"token\":%d,\"waited\":0}\n", id, FAKE_TOKEN);
	fake_events(fd, script->after_grant);
}

static int	 handoffs_lost;	/* in the fake: timed out so far */

/*
 * Answer one request line; returns 1 after a grant.  Request lines start
 * {"id":N,"op":"NAME" as proto_request_format writes them.
 */
static int
fake_answer(int fd, const char *line, const struct fake_script *script)
{
	long long	 id;
	char		 op[16];

	if (sscanf(line, "{\"id\":%lld,\"op\":\"%15[a-z]\"", &id, op) != 2)
		_exit(3);
	if (strcmp(op, "hello") == 0 && script->protocol >= 0)
		fake_say(fd, "{\"id\":%lld,\"ok\":true,\"server\":\"locksd\","
		    "\"version\":\"0.1.0\",\"protocol\":%d,\"pid\":%ld}\n", id,
		    script->protocol, (long)getpid());
	else if (strcmp(op, "hello") == 0)
		fake_say(fd, "{\"id\":%lld,\"ok\":true,\"server\":\"locksd\","
		    "\"pid\":%ld}\n", id, (long)getpid());
	else if (strcmp(op, "acquire") == 0 && strstr(line,
	    "\"handoff\":true") != NULL && handoffs_lost <
	    script->lost_handoffs) {
		/* As locksd says when an outside flock won the move. */
		handoffs_lost++;
		fake_say(fd, "{\"id\":%lld,\"ok\":false,\"error\":{\"code\":"
		    "\"timeout\",\"message\":\"a process outside the broker "
		    "took the file while the lock moved onto the descriptor\"}}"
		    "\n", id);
	} else if (strcmp(op, "acquire") == 0) {
		fake_acquire(fd, id, script);
		return 1;
	} else
		fake_say(fd, "{\"id\":%lld,\"ok\":true}\n", id);
	return 0;
}

/* Act on one command from the test. */
static void
fake_command(int fd, char cmd)
{
	switch (cmd) {
	case CMD_EVENT:
		fake_events(fd, 1);
		break;
	case CMD_HALF:
		fake_say(fd, "{\"event\":\"contended\",");
		break;
	case CMD_REST:
		fake_say(fd, "\"name\":\"fake-x\"}\n");
		break;
	case CMD_BLANK:
		fake_say(fd, "\n");
		break;
	case CMD_FLOOD:
		fake_events(fd, FAKE_FLOOD);
		break;
	case CMD_GARBAGE:
		fake_say(fd, "this is not json\n");
		break;
	default:
		_exit(0);
	}
}

/* The fake's life: accept one client and serve it until told to stop. */
static void __attribute__((noreturn))
fake_serve(int lfd, int ctl, const struct fake_script *script)
{
	struct pollfd	 pfd[2];
	char		 buf[65536], cmd, *nl;
	size_t		 len = 0;
	ssize_t		 n;
	double		 granted = 0, pushed = 0, t;
	int		 fd, timeout;

	if ((fd = accept(lfd, NULL, NULL)) == -1)
		_exit(2);
	pfd[0].fd = fd;
	pfd[0].events = POLLIN;
	pfd[1].fd = ctl;
	pfd[1].events = POLLIN;
	for (;;) {
		timeout = granted > 0 && (script->every_ms > 0 ||
		    script->hangup_ms > 0) ? 10 : -1;
		if (poll(pfd, 2, timeout) == -1 && errno != EINTR)
			_exit(2);
		t = now();
		if (granted > 0 && script->hangup_ms > 0 &&
		    t - granted >= script->hangup_ms / 1000.0)
			_exit(0);
		if (granted > 0 && script->every_ms > 0 &&
		    t - pushed >= script->every_ms / 1000.0) {
			fake_events(fd, 1);
			pushed = t;
		}
		if (pfd[1].revents != 0) {
			if (read(ctl, &cmd, 1) != 1)
				_exit(0);
			fake_command(fd, cmd);
		}
		if (pfd[0].revents == 0)
			continue;
		if ((n = read(fd, buf + len, sizeof buf - 1 - len)) <= 0)
			_exit(0);
		len += (size_t)n;
		buf[len] = '\0';
		while ((nl = strchr(buf, '\n')) != NULL) {
			*nl = '\0';
			if (fake_answer(fd, buf, script))
				granted = pushed = now();
			len -= (size_t)(nl + 1 - buf);
			memmove(buf, nl + 1, len + 1);
		}
	}
}

/* Start a fake daemon on a fresh socket, listening before we return. */
static void
fake_start(struct fake *f, const struct fake_script *script)
{
	struct sockaddr_un	 sun;
	pid_t			 parent;
	int			 lfd, pipefd[2];

	snprintf(f->path, sizeof f->path, "%s/client-%ld.sock", TEST_TMPDIR,
	    (long)getpid());
	unlink(f->path);
	memset(&sun, 0, sizeof sun);
	sun.sun_family = AF_UNIX;
	ck_assert_uint_lt(strlen(f->path), sizeof sun.sun_path);
	memcpy(sun.sun_path, f->path, strlen(f->path));
	lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	ck_assert_int_ge(lfd, 0);
	ck_assert_int_eq(bind(lfd, (struct sockaddr *)&sun, sizeof sun), 0);
	ck_assert_int_eq(listen(lfd, 4), 0);
	ck_assert_int_eq(pipe2(pipefd, O_CLOEXEC), 0);
	parent = getpid();
	f->pid = fork();
	ck_assert_int_ge(f->pid, 0);
	if (f->pid == 0) {
		/* Die with the test, even if it died before the prctl. */
		if (prctl(PR_SET_PDEATHSIG, SIGKILL) == -1 ||
		    getppid() != parent)
			_exit(1);
		close(pipefd[1]);
		fake_serve(lfd, pipefd[0], script);
	}
	close(lfd);
	close(pipefd[0]);
	f->ctl = pipefd[1];
}

/* Tell the fake to do something. */
static void
fake_tell(struct fake *f, char cmd)
{
	ck_assert_int_eq(write(f->ctl, &cmd, 1), 1);
}

/* Stop the fake and remove its socket. */
static void
fake_stop(struct fake *f)
{
	close(f->ctl);
	kill(f->pid, SIGKILL);
	waitpid(f->pid, NULL, 0);
	unlink(f->path);
}

/* Whether fd turns readable within ms milliseconds. */
static int
readable(int fd, int ms)
{
	struct pollfd	 pfd = { fd, POLLIN | POLLRDHUP, 0 };

	return poll(&pfd, 1, ms) == 1;
}

/* Connect to the fake and take fake-x; the grant's token is checked. */
static locks_conn *
connect_and_acquire(const struct fake *f)
{
	locks_conn	*conn = NULL;
	int64_t		 token = 0;

	ck_assert_int_eq(locks_connect(f->path, "test", &conn), LOCKS_OK);
	ck_assert_int_eq(locks_acquire(conn, "fake-x", NULL, &token),
	    LOCKS_OK);
	ck_assert_int_eq(token, FAKE_TOKEN);
	return conn;
}

/*
 * Like an event loop, call locks_check each time the socket turns
 * readable, for secs seconds; returns how many times it woke.
 */
static int
loop_wakeups(locks_conn *conn, double secs)
{
	double	 end = now() + secs;
	int	 wakeups = 0;

	while (now() < end) {
		if (!readable(locks_fd(conn), 50))
			continue;
		wakeups++;
		ck_assert_int_eq(locks_check(conn), LOCKS_OK);
	}
	return wakeups;
}

/*
 * Pushed events, through liblocks.
 */

START_TEST(test_check_reads_pushed_events_and_leaves_the_socket_quiet)
{
	struct fake_script	 script = { .protocol = PROTO_VERSION,
				    .after_grant = 3 };
	struct fake		 f;
	locks_conn		*conn;
	int			 wakeups;

	fake_start(&f, &script);
	conn = connect_and_acquire(&f);
	/* The events may have come with the grant, or just after it. */
	ck_assert_int_eq(locks_check(conn), LOCKS_OK);
	wakeups = loop_wakeups(conn, 0.3);
	ck_assert_msg(wakeups <= 1, "%d wake-ups for three events", wakeups);
	ck_assert_msg(!readable(locks_fd(conn), 0),
	    "the socket is still readable after locks_check");
	ck_assert_int_eq(locks_held(conn, "fake-x"), 1);

	/* One event more: one wake-up, not a spin. */
	fake_tell(&f, CMD_EVENT);
	wakeups = loop_wakeups(conn, 2.0);
	ck_assert_msg(wakeups == 1, "%d wake-ups for one event", wakeups);
	ck_assert_int_eq(locks_ping(conn), LOCKS_OK);
	ck_assert_int_eq(locks_held(conn, "fake-x"), 1);
	ck_assert_int_eq(locks_release(conn, "fake-x"), LOCKS_OK);
	locks_close(conn);
	fake_stop(&f);
}
END_TEST

START_TEST(test_check_keeps_half_an_event_until_the_rest_comes)
{
	struct fake_script	 script = { .protocol = PROTO_VERSION };
	struct fake		 f;
	locks_conn		*conn;

	fake_start(&f, &script);
	conn = connect_and_acquire(&f);
	fake_tell(&f, CMD_HALF);
	ck_assert(readable(locks_fd(conn), 2000));
	ck_assert_int_eq(locks_check(conn), LOCKS_OK);
	ck_assert(!readable(locks_fd(conn), 0));
	fake_tell(&f, CMD_REST);
	fake_tell(&f, CMD_BLANK);
	ck_assert(readable(locks_fd(conn), 2000));
	ck_assert_int_eq(loop_wakeups(conn, 0.3) <= 2, 1);
	ck_assert(!readable(locks_fd(conn), 0));
	/* What was left of the event does not confuse the next reply. */
	ck_assert_int_eq(locks_ping(conn), LOCKS_OK);
	ck_assert_int_eq(locks_held(conn, "fake-x"), 1);
	locks_close(conn);
	fake_stop(&f);
}
END_TEST

START_TEST(test_check_drains_a_flood_in_bounded_calls)
{
	struct fake_script	 script = { .protocol = PROTO_VERSION };
	struct fake		 f;
	locks_conn		*conn;
	double			 t0;
	int			 calls = 0;

	fake_start(&f, &script);
	conn = connect_and_acquire(&f);
	fake_tell(&f, CMD_FLOOD);
	ck_assert(readable(locks_fd(conn), 2000));
	t0 = now();
	while (readable(locks_fd(conn), 200) && calls < 10000) {
		calls++;
		ck_assert_int_eq(locks_check(conn), LOCKS_OK);
	}
	ck_assert_msg(!readable(locks_fd(conn), 0), "still readable after "
	    "%d calls", calls);
	ck_assert_msg(now() - t0 < 5, "draining took %.2f s", now() - t0);
	ck_assert_int_eq(locks_ping(conn), LOCKS_OK);
	locks_close(conn);
	fake_stop(&f);
}
END_TEST

START_TEST(test_check_notices_a_hangup_after_pushed_events)
{
	struct fake_script	 script = { .protocol = PROTO_VERSION,
				    .after_grant = 2 };
	struct fake		 f;
	locks_conn		*conn;

	fake_start(&f, &script);
	conn = connect_and_acquire(&f);
	ck_assert_int_eq(locks_check(conn), LOCKS_OK);
	ck_assert_int_le(loop_wakeups(conn, 0.3), 1);
	fake_tell(&f, CMD_EVENT);
	fake_tell(&f, CMD_HANGUP);
	ck_assert(readable(locks_fd(conn), 2000));
	/* The event may come alone first; the hang-up is noticed next. */
	if (locks_check(conn) == LOCKS_OK)
		ck_assert(readable(locks_fd(conn), 2000));
	ck_assert_int_eq(locks_check(conn), LOCKS_E_LOST);
	ck_assert_ptr_nonnull(strstr(locks_last_message(conn),
	    "lost the connection"));
	ck_assert_int_eq(locks_held(conn, "fake-x"), 0);
	ck_assert_int_eq(locks_ping(conn), LOCKS_E_LOST);
	locks_close(conn);
	fake_stop(&f);
}
END_TEST

START_TEST(test_check_calls_a_line_that_is_not_json_a_loss)
{
	struct fake_script	 script = { .protocol = PROTO_VERSION };
	struct fake		 f;
	locks_conn		*conn;

	fake_start(&f, &script);
	conn = connect_and_acquire(&f);
	fake_tell(&f, CMD_GARBAGE);
	ck_assert(readable(locks_fd(conn), 2000));
	ck_assert_int_eq(locks_check(conn), LOCKS_E_LOST);
	ck_assert_ptr_nonnull(strstr(locks_last_message(conn),
	    "not a JSON object"));
	ck_assert_int_eq(locks_held(conn, "fake-x"), 0);
	locks_close(conn);
	fake_stop(&f);
}
END_TEST

/* What the blocking callback saw. */
struct seen {
	int		 calls;
	int		 position;
	pid_t		 pid;
	char		 mode[16];
	int		 check;	/* locks_check from inside the callback */
	int		 nested;	/* a request from inside it */
	locks_conn	*conn;
};

/* An on_blocking callback that notes its arguments. */
static void
note_blocking(const locks_lock *lock, int position, void *arg)
{
	struct seen		*seen = arg;
	const locks_holder	*h;

	seen->calls++;
	seen->position = position;
	if (strcmp(locks_lock_name(lock), "fake-x") != 0 ||
	    (h = locks_lock_holder(lock, 0)) == NULL)
		return;
	seen->pid = locks_holder_pid(h);
	snprintf(seen->mode, sizeof seen->mode, "%s",
	    locks_mode_name(locks_holder_mode(h)));
	/* It must not take the grant, which may be read already, as stray. */
	seen->check = locks_check(seen->conn);
	/* A request from here would take the acquire's reply: refused. */
	seen->nested = locks_ping(seen->conn);
}

START_TEST(test_events_during_an_acquire_are_passed_over)
{
	struct fake_script	 script = { .protocol = PROTO_VERSION,
				    .before_grant = 1, .blocking = 1 };
	struct locks_acquire_opts opts = LOCKS_ACQUIRE_OPTS_INIT;
	struct seen		 seen = { .check = -1 };
	struct fake		 f;
	locks_conn		*conn = NULL;
	int64_t			 token = 0;

	fake_start(&f, &script);
	ck_assert_int_eq(locks_connect(f.path, "test", &conn), LOCKS_OK);
	seen.conn = conn;
	opts.on_blocking = note_blocking;
	opts.arg = &seen;
	ck_assert_int_eq(locks_acquire(conn, "fake-x", &opts, &token),
	    LOCKS_OK);
	ck_assert_int_eq(token, FAKE_TOKEN);
	ck_assert_int_eq(seen.calls, 1);
	ck_assert_int_eq(seen.position, 2);
	ck_assert_int_eq(seen.pid, 4242);
	ck_assert_str_eq(seen.mode, "shared");
	ck_assert_int_eq(seen.check, LOCKS_OK);
	ck_assert_int_eq(seen.nested, LOCKS_E_INVAL);
	ck_assert_int_eq(locks_held(conn, "fake-x"), 1);
	ck_assert(!readable(locks_fd(conn), 0) ||
	    locks_check(conn) == LOCKS_OK);
	locks_close(conn);
	fake_stop(&f);
}
END_TEST

/*
 * The descriptor form waits again when an outside flock(2) won the move
 * of the lock onto the descriptor (the daemon says timeout), as flock(1)
 * would; with a timeout it stops once that is spent, and with 0 at once.
 */
START_TEST(test_descriptor_form_waits_again_after_a_lost_move)
{
	struct fake_script	 script = { .protocol = PROTO_VERSION,
				    .lost_handoffs = 2 };
	struct locks_acquire_opts opts = LOCKS_ACQUIRE_OPTS_INIT;
	struct fake		 f;
	locks_conn		*conn = NULL;
	int64_t			 token = 0;
	int			 fd;

	ck_assert_int_ge(fd = open("/dev/null", O_RDONLY | O_CLOEXEC), 0);
	fake_start(&f, &script);
	ck_assert_int_eq(locks_connect(f.path, "test", &conn), LOCKS_OK);
	ck_assert_int_eq(locks_acquire_fd(conn, fd, NULL, &token), LOCKS_OK);
	ck_assert_int_eq(token, FAKE_TOKEN);
	locks_close(conn);
	fake_stop(&f);

	opts.timeout = 0;
	fake_start(&f, &script);
	ck_assert_int_eq(locks_connect(f.path, "test", &conn), LOCKS_OK);
	ck_assert_int_eq(locks_acquire_fd(conn, fd, &opts, &token),
	    LOCKS_E_TIMEOUT);
	locks_close(conn);
	fake_stop(&f);

	opts.timeout = 60;
	fake_start(&f, &script);
	ck_assert_int_eq(locks_connect(f.path, "test", &conn), LOCKS_OK);
	ck_assert_int_eq(locks_acquire_fd(conn, fd, &opts, &token), LOCKS_OK);
	locks_close(conn);
	fake_stop(&f);
	close(fd);
}
END_TEST

/*
 * The protocol version in hello.
 */

START_TEST(test_connect_refuses_another_protocol_version)
{
	struct fake_script	 script = { .protocol = PROTO_VERSION + 1 };
	struct fake		 f;
	locks_conn		*conn = NULL;
	char			 want[64];

	fake_start(&f, &script);
	ck_assert_int_eq(locks_connect(f.path, "test", &conn),
	    LOCKS_E_VERSION);
	ck_assert_ptr_null(conn);
	snprintf(want, sizeof want, "speaks protocol %d", PROTO_VERSION + 1);
	ck_assert_msg(strstr(locks_last_message(NULL), want) != NULL, "%s",
	    locks_last_message(NULL));
	snprintf(want, sizeof want, "speaks protocol %d", PROTO_VERSION);
	ck_assert_msg(strstr(locks_last_message(NULL), want) != NULL, "%s",
	    locks_last_message(NULL));
	ck_assert_str_eq(locks_error_code(LOCKS_E_VERSION),
	    "protocol_version");
	snprintf(want, sizeof want, "(%d)", PROTO_VERSION);
	ck_assert_ptr_nonnull(strstr(locks_strerror(LOCKS_E_VERSION), want));
	fake_stop(&f);
}
END_TEST

START_TEST(test_connect_refuses_a_hello_without_a_protocol_version)
{
	struct fake_script	 script = { .protocol = -1 };
	struct fake		 f;
	locks_conn		*conn = NULL;

	fake_start(&f, &script);
	ck_assert_int_eq(locks_connect(f.path, "test", &conn),
	    LOCKS_E_PROTOCOL);
	ck_assert_ptr_null(conn);
	ck_assert_ptr_nonnull(strstr(locks_last_message(NULL),
	    "did not say which protocol"));
	fake_stop(&f);
}
END_TEST

/*
 * The CLI.
 */

/* How a run of the CLI went. */
struct cli_run {
	int	 status;	/* exit status, or -1 if killed */
	double	 cpu;		/* user + system seconds */
	double	 wall;
	char	 err[4096];	/* its stderr */
};

/* Run the CLI with args against the fake; kill it after 10 s. */
static void
cli_run(const struct fake *f, const char *const *args, struct cli_run *r)
{
	const char	*argv[16];
	struct rusage	 ru;
	char		 errpath[160];
	double		 t0;
	pid_t		 pid, parent;
	int		 status, fd, i, n = 0;
	ssize_t		 len;

	argv[n++] = LOCKS_CLI_PATH;
	argv[n++] = "--socket";
	argv[n++] = f->path;
	for (i = 0; args[i] != NULL && n < 15; i++)
		argv[n++] = args[i];
	argv[n] = NULL;
	snprintf(errpath, sizeof errpath, "%s/client-%ld.err", TEST_TMPDIR,
	    (long)getpid());
	t0 = now();
	parent = getpid();
	pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		if (prctl(PR_SET_PDEATHSIG, SIGKILL) == -1 ||
		    getppid() != parent)
			_exit(1);
		if ((fd = open(errpath, O_WRONLY | O_CREAT | O_TRUNC,
		    0600)) == -1 || dup2(fd, 2) == -1)
			_exit(126);
		if ((fd = open("/dev/null", O_WRONLY)) == -1 ||
		    dup2(fd, 1) == -1)
			_exit(126);
		alarm(10);
		execv(argv[0], (char *const *)argv);
		_exit(127);
	}
	ck_assert_int_eq(wait4(pid, &status, 0, &ru), pid);
	r->wall = now() - t0;
	r->cpu = (double)ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 +
	    (double)ru.ru_stime.tv_sec + ru.ru_stime.tv_usec / 1e6;
	r->status = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
	r->err[0] = '\0';
	if ((fd = open(errpath, O_RDONLY)) != -1) {
		len = read(fd, r->err, sizeof r->err - 1);
		r->err[len > 0 ? len : 0] = '\0';
		close(fd);
	}
	unlink(errpath);
}

START_TEST(test_run_does_not_spin_on_pushed_events)
{
	static const char *const args[] = { "run", "fake-x", "--", "sleep",
	    "1", NULL };
	struct fake_script	 script = { .protocol = PROTO_VERSION,
				    .after_grant = 1, .every_ms = 200 };
	struct fake		 f;
	struct cli_run		 r;

	fake_start(&f, &script);
	cli_run(&f, args, &r);
	ck_assert_msg(r.status == 0, "exit %d: %s", r.status, r.err);
	ck_assert_msg(r.cpu < IDLE_CPU_SECS, "locks run used %.2f s of CPU "
	    "in %.2f s", r.cpu, r.wall);
	fake_stop(&f);
}
END_TEST

START_TEST(test_run_notices_a_hangup_after_pushed_events)
{
	static const char *const args[] = { "run", "fake-x", "--", "sleep",
	    "5", NULL };
	struct fake_script	 script = { .protocol = PROTO_VERSION,
				    .after_grant = 2, .every_ms = 100,
				    .hangup_ms = 500 };
	struct fake		 f;
	struct cli_run		 r;

	fake_start(&f, &script);
	cli_run(&f, args, &r);
	ck_assert_msg(r.status == 75, "exit %d, not 75: %s", r.status, r.err);
	ck_assert_msg(strstr(r.err, "fake-x is no longer held") != NULL,
	    "%s", r.err);
	ck_assert_msg(r.wall < 3, "took %.2f s to notice", r.wall);
	ck_assert_msg(r.cpu < IDLE_CPU_SECS, "locks run used %.2f s of CPU",
	    r.cpu);
	fake_stop(&f);
}
END_TEST

START_TEST(test_cli_refuses_another_protocol_version)
{
	static const char *const args[] = { "status", NULL };
	struct fake_script	 script = { .protocol = PROTO_VERSION + 1 };
	struct fake		 f;
	struct cli_run		 r;
	char			 want[64];

	fake_start(&f, &script);
	cli_run(&f, args, &r);
	ck_assert_msg(r.status == 70, "exit %d, not 70: %s", r.status, r.err);
	snprintf(want, sizeof want, "speaks protocol %d", PROTO_VERSION + 1);
	ck_assert_msg(strstr(r.err, want) != NULL, "%s", r.err);
	fake_stop(&f);
}
END_TEST

/*
 * What locks.h exports, and the success-reply scanner under it.
 */

START_TEST(test_exports_match_the_protocol)
{
	ck_assert_int_eq(LOCKS_MAX_NAME, PROTO_MAX_NAME);
	ck_assert_int_eq(LOCKS_MAX_OWNER, PROTO_MAX_LABEL);
	ck_assert(LOCKS_MAX_SECONDS == PROTO_MAX_SECONDS);
	ck_assert_str_eq(locks_mode_name(LOCKS_EXCLUSIVE), "exclusive");
	ck_assert_str_eq(locks_mode_name(LOCKS_SHARED), "shared");
	ck_assert_ptr_null(locks_mode_name((enum locks_mode)7));
}
END_TEST

/* proto_success_scan on a string; returns its result, token in *token. */
static int
scan(const char *line, int64_t id, int64_t *token)
{
	*token = -1;
	return proto_success_scan(line, strlen(line), id, token);
}

START_TEST(test_success_scan_takes_plain_replies_and_grants)
{
	int64_t	 token;

	ck_assert_int_eq(scan("{\"id\":5,\"ok\":true}", 5, &token), 1);
	ck_assert_int_eq(token, 0);
	ck_assert_int_eq(scan("{\"id\":12,\"ok\":true,\"name\":\"a\","
	    "\"mode\":\"shared\",\"token\":1764253000123456,\"waited\":0}",
	    12, &token), 1);
	ck_assert_int_eq(token, 1764253000123456);
	ck_assert_int_eq(scan("{\"id\":3,\"ok\":true,\"token\":9}", 3,
	    &token), 1);
	ck_assert_int_eq(token, 9);
}
END_TEST

START_TEST(test_success_scan_leaves_everything_else_to_json_c)
{
	static const char *const lines[] = {
		"{\"id\":55,\"ok\":true}",		/* another id */
		"{\"id\":5,\"ok\":false}",
		"{\"id\":5,\"ok\":true",		/* no end */
		"{\"id\":5,\"ok\":true,\"name\":\"a\"}",	/* no token */
		"{\"id\":5,\"ok\":true,\"token\":0}",
		"{\"id\":5,\"ok\":true,\"token\":07}",
		"{\"id\":5,\"ok\":true,\"token\":-7}",
		"{\"id\":5,\"ok\":true,\"token\":99999999999999999999}",
		"{\"id\":5,\"ok\":true,\"token\":7x}",
		"{\"id\":5,\"ok\":true,\"name\":\"\\u0041\",\"token\":7}",
		"{\"id\":5,\"event\":\"blocking\"}",
		" {\"id\":5,\"ok\":true}",
	};
	int64_t	 token;
	size_t	 i;

	for (i = 0; i < sizeof lines / sizeof lines[0]; i++)
		ck_assert_msg(scan(lines[i], 5, &token) == 0 && token == -1,
		    "took %s", lines[i]);
	ck_assert_int_eq(scan("{\"id\":0,\"ok\":true}", 0, &token), 0);
}
END_TEST

static Suite *
client_suite(void)
{
	Suite	*s = suite_create("client");
	TCase	*tc;

	tc = tcase_create("pushed events");
	tcase_set_timeout(tc, 30);
	tcase_add_test(tc,
	    test_check_reads_pushed_events_and_leaves_the_socket_quiet);
	tcase_add_test(tc, test_check_keeps_half_an_event_until_the_rest_comes);
	tcase_add_test(tc, test_check_drains_a_flood_in_bounded_calls);
	tcase_add_test(tc, test_check_notices_a_hangup_after_pushed_events);
	tcase_add_test(tc, test_check_calls_a_line_that_is_not_json_a_loss);
	tcase_add_test(tc, test_events_during_an_acquire_are_passed_over);
	tcase_add_test(tc, test_descriptor_form_waits_again_after_a_lost_move);
	suite_add_tcase(s, tc);

	tc = tcase_create("protocol version");
	tcase_add_test(tc, test_connect_refuses_another_protocol_version);
	tcase_add_test(tc,
	    test_connect_refuses_a_hello_without_a_protocol_version);
	suite_add_tcase(s, tc);

	tc = tcase_create("cli");
	tcase_set_timeout(tc, 30);
	tcase_add_test(tc, test_run_does_not_spin_on_pushed_events);
	tcase_add_test(tc, test_run_notices_a_hangup_after_pushed_events);
	tcase_add_test(tc, test_cli_refuses_another_protocol_version);
	suite_add_tcase(s, tc);

	tc = tcase_create("exports");
	tcase_add_test(tc, test_exports_match_the_protocol);
	tcase_add_test(tc, test_success_scan_takes_plain_replies_and_grants);
	tcase_add_test(tc, test_success_scan_leaves_everything_else_to_json_c);
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	return unit_run_suite(client_suite());
}
