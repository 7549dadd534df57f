/*
 * The integration test harness: start and stop a real locksd on a socket
 * in a temporary directory, talk raw protocol to it, fork helper processes
 * that hold locks through liblocks, and run shell commands such as
 * flock(1).
 *
 * Every process the harness forks asks the kernel for SIGKILL when its
 * parent dies (PR_SET_PDEATHSIG), so a crashed or timed-out test never
 * leaves a daemon or a lock holder behind.
 *
 * $LOCKSD_WRAPPER, if set, is a command line the daemon runs under, such
 * as "valgrind --leak-check=full --error-exitcode=1"; waits for the
 * daemon are then stretched (see h_slow).  $LOCKSD_VERBOSE runs it with
 * -v.  The daemon's stderr goes to <dir>/locksd.log, which is printed when
 * it fails to start or stop cleanly.
 */

#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/types.h>
#include <sys/wait.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <ftw.h>
#include <math.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "harness.h"
#include "protocol.h"

#define H_POLL_USEC	5000	/* between checks while waiting */

static char	 errbuf[1024];
static char	 run_dir[96];
static int	 timed_out;	/* the last read ended for lack of input */

/* Remember why the last harness call failed. */
static void __attribute__((format(printf, 1, 2)))
h_fail(const char *fmt, ...)
{
	va_list	 ap;

	va_start(ap, fmt);
	vsnprintf(errbuf, sizeof errbuf, fmt, ap);
	va_end(ap);
}

/* The reason the last harness call failed. */
const char *
h_error(void)
{
	return errbuf;
}

/* Monotonic time in seconds. */
double
h_now(void)
{
	struct timespec	 ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

/* Wall-clock time, as "since" uses. */
double
h_wall_now(void)
{
	struct timespec	 ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

/* Stretch an upper time bound when the daemon runs under a wrapper. */
double
h_slow(double secs)
{
	const char	*wrapper = getenv("LOCKSD_WRAPPER");

	return wrapper != NULL && *wrapper != '\0' ? secs * 10 : secs;
}

/* Sleep for secs seconds, despite signals. */
void
h_sleep(double secs)
{
	struct timespec	 ts;

	ts.tv_sec = (time_t)secs;
	ts.tv_nsec = (long)((secs - floor(secs)) * 1e9);
	while (nanosleep(&ts, &ts) == -1 && errno == EINTR)
		;
}

/*
 * Create the directory that holds every daemon of this run: under the
 * build tree, or under /tmp when that path would make socket paths too
 * long for sun_path.
 */
int
h_init(void)
{
	const char	*base = TEST_TMPDIR;

	if (strlen(base) > 48)
		base = "/tmp";
	snprintf(run_dir, sizeof run_dir, "%s/itest-XXXXXX", base);
	if (mkdtemp(run_dir) == NULL) {
		h_fail("mkdtemp %s: %s", run_dir, strerror(errno));
		run_dir[0] = '\0';
		return -1;
	}
	/* Let a holder running as another user reach the sockets. */
	chmod(run_dir, 0711);
	return 0;
}

/* The directory that holds every daemon of this run. */
const char *
h_run_dir(void)
{
	return run_dir;
}

static int
rm_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
	(void)sb;
	(void)flag;
	(void)ftw;
	if (remove(path) == -1)
		fprintf(stderr, "harness: remove %s: %s\n", path,
		    strerror(errno));
	return 0;
}

/* Remove the run's directory, or keep it for a look after a failure. */
void
h_finish(int keep)
{
	if (run_dir[0] == '\0')
		return;
	if (keep) {
		fprintf(stderr, "harness: kept %s for inspection\n", run_dir);
		return;
	}
	nftw(run_dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

/* Fill in a daemon's paths inside dir. */
int
h_daemon_paths(struct h_daemon *d, const char *dir)
{
	int	 n;

	if (dir != d->dir &&
	    snprintf(d->dir, sizeof d->dir, "%s", dir) >= (int)sizeof d->dir) {
		h_fail("directory name too long: %s", dir);
		return -1;
	}
	n = snprintf(d->socket_path, sizeof d->socket_path, "%s/locksd.sock",
	    d->dir);
	if (n < 0 || (size_t)n >= sizeof d->socket_path) {
		h_fail("socket path too long under %s", d->dir);
		return -1;
	}
	snprintf(d->lock_dir, sizeof d->lock_dir, "%s/locks", d->dir);
	snprintf(d->log_path, sizeof d->log_path, "%s/locksd.log", d->dir);
	return 0;
}

/* Start a daemon in a fresh directory of the run. */
int
h_daemon_start(struct h_daemon *d)
{
	char	 dir[128];

	if (run_dir[0] == '\0' && h_init() == -1)
		return -1;
	snprintf(dir, sizeof dir, "%s/d-XXXXXX", run_dir);
	if (mkdtemp(dir) == NULL) {
		h_fail("mkdtemp %s: %s", dir, strerror(errno));
		return -1;
	}
	chmod(dir, 0711);
	return h_daemon_start_in(d, dir);
}

/* Start a daemon whose socket and lock dir live in dir. */
int
h_daemon_start_in(struct h_daemon *d, const char *dir)
{
	pid_t	 pid;

	d->pid = 0;
	if (h_daemon_paths(d, dir) == -1)
		return -1;
	if ((pid = h_daemon_spawn(d)) == -1)
		return -1;
	return h_daemon_wait_ready(d, pid);
}

/*
 * Start d as uid (0: as we are) in dir, made for it 0700 if missing and
 * given mode once the daemon listens: whatever the daemon accepts at
 * start, a client must judge what it finds.
 */
int
h_daemon_start_as(struct h_daemon *d, uid_t uid, const char *dir,
    mode_t mode)
{
	memset(d, 0, sizeof *d);
	if (mkdir(dir, 0700) == -1 && errno != EEXIST) {
		h_fail("mkdir %s: %s", dir, strerror(errno));
		return -1;
	}
	if (chown(dir, uid, uid) == -1) {
		h_fail("chown %s: %s", dir, strerror(errno));
		return -1;
	}
	d->uid = uid;
	d->gid = uid;
	if (h_daemon_start_in(d, dir) == -1)
		return -1;
	if (chmod(dir, mode) == -1) {
		h_fail("chmod %s: %s", dir, strerror(errno));
		return -1;
	}
	return 0;
}

/* Start the daemon again on the same socket and lock dir. */
int
h_daemon_restart(struct h_daemon *d)
{
	return h_daemon_start_in(d, d->dir);
}

/* In a forked child: die with the parent, even if it is already gone. */
static void
die_with_parent(pid_t parent)
{
	if (prctl(PR_SET_PDEATHSIG, SIGKILL) == -1 || getppid() != parent)
		_exit(127);
}

/*
 * Fork and exec locksd on d's socket and lock dir, without waiting for
 * it.  The daemon runs with umask 077, so the modes of its lock dir and
 * lock files prove it sets them itself.
 */
pid_t
h_daemon_spawn(const struct h_daemon *d)
{
	const char	*wrapper = getenv("LOCKSD_WRAPPER");
	const char	*argv[20];
	struct rlimit	 rl;
	sigset_t	 none;
	pid_t		 parent = getpid(), pid;
	size_t		 i, n = 0;
	int		 fd;

	if (wrapper != NULL && *wrapper != '\0') {
		argv[n++] = "sh";
		argv[n++] = "-c";
		argv[n++] = "exec $LOCKSD_WRAPPER \"$@\"";
		argv[n++] = "sh";
	}
	argv[n++] = LOCKSD_PATH;
	if (!d->env_only) {
		argv[n++] = "--socket";
		argv[n++] = d->socket_path;
		argv[n++] = "--lock-dir";
		argv[n++] = d->lock_dir;
	}
	if (getenv("LOCKSD_VERBOSE") != NULL)
		argv[n++] = "-v";
	for (i = 0; i < 4 && d->extra[i] != NULL; i++)
		argv[n++] = d->extra[i];
	argv[n] = NULL;

	fflush(NULL);
	if ((pid = fork()) == -1) {
		h_fail("fork: %s", strerror(errno));
		return -1;
	}
	if (pid > 0)
		return pid;

	die_with_parent(parent);
	sigemptyset(&none);
	sigprocmask(SIG_SETMASK, &none, NULL);
	signal(SIGPIPE, SIG_DFL);
	umask(077);
	fd = open(d->log_path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC,
	    0600);
	if (fd != -1) {
		dup2(fd, STDOUT_FILENO);
		dup2(fd, STDERR_FILENO);
	}
	if (d->nofile != 0) {
		rl.rlim_cur = rl.rlim_max = d->nofile;
		if (setrlimit(RLIMIT_NOFILE, &rl) == -1)
			_exit(126);
	}
	/* The log stays open as ours; the daemon itself is someone else. */
	if (d->gid != 0 && (setgroups(0, NULL) == -1 || setgid(d->gid) == -1))
		_exit(126);
	if (d->uid != 0 && setuid(d->uid) == -1)
		_exit(126);
	/* With env_only the defaults apply: the socket from the environment. */
	if (d->env_only)
		setenv("LOCKS_SOCKET", d->socket_path, 1);
	if (wrapper != NULL && *wrapper != '\0')
		execv("/bin/sh", (char *const *)argv);
	else
		execv(LOCKSD_PATH, (char *const *)argv);
	fprintf(stderr, "exec %s: %s\n", LOCKSD_PATH, strerror(errno));
	_exit(127);
}

/* Try to connect to a Unix socket; the blocking fd, or -1. */
int
h_unix_connect(const char *path)
{
	struct sockaddr_un	 sun;
	int			 fd;

	memset(&sun, 0, sizeof sun);
	sun.sun_family = AF_UNIX;
	if (strlen(path) >= sizeof sun.sun_path) {
		errno = ENAMETOOLONG;
		return -1;
	}
	strcpy(sun.sun_path, path);
	if ((fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0)) == -1)
		return -1;
	while (connect(fd, (struct sockaddr *)&sun, sizeof sun) == -1) {
		if (errno != EINTR) {
			close(fd);
			return -1;
		}
	}
	return fd;
}

/* Describe a wait status for a message. */
static const char *
status_text(int status)
{
	static char	 buf[64];

	if (WIFEXITED(status))
		snprintf(buf, sizeof buf, "exit %d", WEXITSTATUS(status));
	else if (WIFSIGNALED(status))
		snprintf(buf, sizeof buf, "signal %d", WTERMSIG(status));
	else
		snprintf(buf, sizeof buf, "status %#x", status);
	return buf;
}

/*
 * Whether the daemon on path is pid, not one still running there from
 * before: its hello names its pid.  A refused hello (a test's access
 * rules) cannot tell, and counts as yes.
 */
static int
answers_as(const char *path, pid_t pid)
{
	struct h_conn		*c;
	struct json_object	*r;
	int			 yes;

	if ((c = h_conn_open(path)) == NULL)
		return 0;
	r = h_request(c, "{\"op\":\"hello\"}");
	yes = r != NULL && (!h_ok(r) || h_int(r, "pid") == (int64_t)pid);
	h_conn_close(c);
	return yes;
}

/* Wait until pid's socket accepts a connection; then d->pid is pid. */
int
h_daemon_wait_ready(struct h_daemon *d, pid_t pid)
{
	double	 deadline = h_now() + h_slow(H_START_SECS);
	int	 fd, status;

	for (;;) {
		if (waitpid(pid, &status, WNOHANG) == pid) {
			h_fail("locksd exited (%s) before listening on %s",
			    status_text(status), d->socket_path);
			h_daemon_dump_log(d);
			return -1;
		}
		if ((fd = h_unix_connect(d->socket_path)) != -1) {
			close(fd);
			if (answers_as(d->socket_path, pid)) {
				d->pid = pid;
				return 0;
			}
		}
		if (h_now() > deadline)
			break;
		usleep(H_POLL_USEC);
	}
	kill(pid, SIGKILL);
	waitpid(pid, NULL, 0);
	h_fail("locksd did not listen on %s within %.0f s", d->socket_path,
	    h_slow(H_START_SECS));
	h_daemon_dump_log(d);
	return -1;
}

/*
 * Fork a child that runs body(fd, arg), which writes size bytes of report
 * to fd and exits; wait for the report in rep and reap the child.  The
 * child dies with us.  Returns its pid, or -1.
 */
pid_t
h_spawn_report(void (*body)(int, const void *), const void *arg, void *rep,
    size_t size)
{
	struct pollfd	 pfd;
	pid_t		 parent = getpid(), pid;
	int		 fds[2], status;

	if (pipe2(fds, O_CLOEXEC) == -1) {
		h_fail("pipe: %s", strerror(errno));
		return -1;
	}
	fflush(NULL);
	if ((pid = fork()) == -1) {
		h_fail("fork: %s", strerror(errno));
		close(fds[0]);
		close(fds[1]);
		return -1;
	}
	if (pid == 0) {
		die_with_parent(parent);
		close(fds[0]);
		body(fds[1], arg);
		_exit(0);
	}
	close(fds[1]);
	pfd.fd = fds[0];
	pfd.events = POLLIN;
	if (poll(&pfd, 1, (int)(h_slow(H_REPLY_SECS) * 1000)) != 1 ||
	    read(fds[0], rep, size) != (ssize_t)size) {
		kill(pid, SIGKILL);
		waitpid(pid, NULL, 0);
		close(fds[0]);
		h_fail("process %ld did not report", (long)pid);
		return -1;
	}
	close(fds[0]);
	if (h_wait_exit(pid, h_slow(H_REPLY_SECS), &status) == -1)
		return -1;
	return pid;
}

/* Reap pid within secs; 0 and its status, or -1 if it is still running. */
int
h_wait_exit(pid_t pid, double secs, int *ret_status)
{
	double	 deadline = h_now() + secs;
	pid_t	 r;

	for (;;) {
		r = waitpid(pid, ret_status, WNOHANG);
		if (r == pid)
			return 0;
		if (r == -1 && errno != EINTR) {
			h_fail("waitpid %ld: %s", (long)pid, strerror(errno));
			return -1;
		}
		if (h_now() > deadline) {
			h_fail("process %ld still running after %.1f s",
			    (long)pid, secs);
			return -1;
		}
		usleep(H_POLL_USEC);
	}
}

/* Stop the daemon with SIGTERM; it must exit 0 and remove its socket. */
int
h_daemon_stop(struct h_daemon *d)
{
	return h_daemon_signal_stop(d, SIGTERM);
}

/* Stop the daemon with sig; it must exit 0 and remove its socket. */
int
h_daemon_signal_stop(struct h_daemon *d, int sig)
{
	struct stat	 sb;
	int		 status;

	if (d->pid <= 0) {
		h_fail("locksd is not running");
		return -1;
	}
	kill(d->pid, sig);
	if (h_wait_exit(d->pid, h_slow(2 * H_START_SECS), &status) == -1) {
		kill(d->pid, SIGKILL);
		waitpid(d->pid, NULL, 0);
		d->pid = 0;
		h_fail("locksd ignored signal %d; killed it", sig);
		h_daemon_dump_log(d);
		return -1;
	}
	d->pid = 0;
	if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
		h_fail("locksd ended with %s after signal %d, not exit 0",
		    status_text(status), sig);
		h_daemon_dump_log(d);
		return -1;
	}
	if (lstat(d->socket_path, &sb) == 0) {
		h_fail("locksd left its socket %s behind", d->socket_path);
		return -1;
	}
	return 0;
}

/* Kill the daemon with SIGKILL, as a crash would, and reap it. */
void
h_daemon_kill(struct h_daemon *d)
{
	if (d->pid <= 0)
		return;
	kill(d->pid, SIGKILL);
	waitpid(d->pid, NULL, 0);
	d->pid = 0;
}

/* Copy the daemon's log to stderr. */
void
h_daemon_dump_log(const struct h_daemon *d)
{
	char	 line[1024];
	FILE	*fp;

	if ((fp = fopen(d->log_path, "r")) == NULL)
		return;
	fprintf(stderr, "---- %s ----\n", d->log_path);
	while (fgets(line, sizeof line, fp) != NULL)
		fputs(line, stderr);
	fprintf(stderr, "---- end of log ----\n");
	fclose(fp);
}

/* Open connections, closed after each passing test so sanitizers see no leak. */
static TAILQ_HEAD(, h_conn) h_conns = TAILQ_HEAD_INITIALIZER(h_conns);

/* Connect a raw protocol connection to the socket at path. */
struct h_conn *
h_conn_open(const char *path)
{
	struct h_conn	*c;
	int		 fd;

	if ((fd = h_unix_connect(path)) == -1) {
		h_fail("connect %s: %s", path, strerror(errno));
		return NULL;
	}
	if ((c = calloc(1, sizeof *c)) == NULL ||
	    (c->tok = proto_tokener_new()) == NULL) {
		free(c);
		close(fd);
		h_fail("out of memory");
		return NULL;
	}
	c->fd = fd;
	TAILQ_INSERT_TAIL(&h_conns, c, entry);
	return c;
}

/* Close the connection and free every message read from it. */
void
h_conn_close(struct h_conn *c)
{
	size_t	 i;

	if (c == NULL)
		return;
	TAILQ_REMOVE(&h_conns, c, entry);
	if (c->fd != -1)
		close(c->fd);
	for (i = 0; i < c->nobjs; i++)
		json_object_put(c->objs[i]);
	free(c->objs);
	free(c->buf);
	json_tokener_free(c->tok);
	free(c);
}

/* Close every connection still open (a checked teardown). */
void
h_conn_close_all(void)
{
	while (!TAILQ_EMPTY(&h_conns))
		h_conn_close(TAILQ_FIRST(&h_conns));
}

/* Send bytes as they are. */
int
h_send_raw(struct h_conn *c, const void *data, size_t len)
{
	const char	*p = data;
	ssize_t		 n;

	while (len > 0) {
		n = send(c->fd, p, len, MSG_NOSIGNAL);
		if (n == -1 && errno == EINTR)
			continue;
		if (n == -1) {
			h_fail("send: %s", strerror(errno));
			return -1;
		}
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

/* Send one formatted line; the newline is added. */
int
h_send(struct h_conn *c, const char *fmt, ...)
{
	va_list	 ap;
	char	*line;
	int	 len, rc;

	va_start(ap, fmt);
	len = vasprintf(&line, fmt, ap);
	va_end(ap);
	if (len < 0) {
		h_fail("out of memory");
		return -1;
	}
	rc = h_send_raw(c, line, (size_t)len);
	free(line);
	if (rc == 0)
		rc = h_send_raw(c, "\n", 1);
	return rc;
}

/* Take the next complete line out of the buffer, or return 0. */
static int
take_line(struct h_conn *c, char **ret_line, size_t *ret_len)
{
	char	*nl, *line;
	size_t	 len;

	if (c->len == 0 || (nl = memchr(c->buf, '\n', c->len)) == NULL)
		return 0;
	len = (size_t)(nl - c->buf);
	if ((line = malloc(len + 1)) == NULL)
		return 0;
	memcpy(line, c->buf, len);
	line[len] = '\0';
	memmove(c->buf, nl + 1, c->len - len - 1);
	c->len -= len + 1;
	*ret_line = line;
	*ret_len = len;
	return 1;
}

/*
 * Read more bytes, waiting until the deadline.  Returns 1 with bytes,
 * 0 on EOF (or a reset, which a closing daemon may cause), -1 on timeout.
 */
static int
read_more(struct h_conn *c, double deadline)
{
	struct pollfd	 pfd;
	double		 left;
	ssize_t		 n;
	char		*buf;
	int		 r;

	for (;;) {
		left = deadline - h_now();
		if (left < 0)
			left = 0;
		pfd.fd = c->fd;
		pfd.events = POLLIN;
		r = poll(&pfd, 1, (int)ceil(left * 1000));
		if (r == -1 && errno == EINTR)
			continue;
		if (r == 0) {
			h_fail("nothing received within the time allowed");
			timed_out = 1;
			return -1;
		}
		break;
	}
	timed_out = 0;
	if (c->cap - c->len < 65536) {
		if ((buf = realloc(c->buf, c->cap + 131072)) == NULL) {
			h_fail("out of memory");
			return -1;
		}
		c->buf = buf;
		c->cap += 131072;
	}
	n = recv(c->fd, c->buf + c->len, c->cap - c->len, 0);
	if (n > 0) {
		c->len += (size_t)n;
		return 1;
	}
	if (n == 0 || errno == ECONNRESET) {
		h_fail("the daemon closed the connection");
		return 0;
	}
	h_fail("recv: %s", strerror(errno));
	return -1;
}

/*
 * Read the next message within secs seconds: a JSON object on one line,
 * parsed strictly.  Blank lines are skipped.  The message stays valid
 * until h_conn_close.  NULL on timeout, EOF or a line that is not JSON.
 */
struct json_object *
h_recv(struct h_conn *c, double secs)
{
	double			 deadline = h_now() + secs;
	struct json_object	*obj, **objs;
	char			*line;
	size_t			 len;

	timed_out = 0;
	for (;;) {
		while (take_line(c, &line, &len)) {
			if (strspn(line, " \t\r") == len) {
				free(line);
				continue;
			}
			if (proto_parse_line(c->tok, line, len, &obj) == -1)
				obj = NULL;
			if (obj == NULL ||
			    !json_object_is_type(obj, json_type_object)) {
				h_fail("the daemon sent a line that is not a "
				    "JSON object: %.200s", line);
				json_object_put(obj);
				free(line);
				return NULL;
			}
			free(line);
			objs = realloc(c->objs, (c->nobjs + 1) * sizeof *objs);
			if (objs == NULL) {
				json_object_put(obj);
				h_fail("out of memory");
				return NULL;
			}
			c->objs = objs;
			c->objs[c->nobjs++] = obj;
			return obj;
		}
		if (read_more(c, deadline) != 1)
			return NULL;
	}
}

/* Send one line and read the next message (H_REPLY_SECS at most). */
struct json_object *
h_request(struct h_conn *c, const char *fmt, ...)
{
	va_list	 ap;
	char	*line;
	int	 len, rc;

	va_start(ap, fmt);
	len = vasprintf(&line, fmt, ap);
	va_end(ap);
	if (len < 0) {
		h_fail("out of memory");
		return NULL;
	}
	rc = h_send_raw(c, line, (size_t)len);
	free(line);
	if (rc == -1 || h_send_raw(c, "\n", 1) == -1)
		return NULL;
	return h_recv(c, h_slow(H_REPLY_SECS));
}

/*
 * Return 1 if the daemon closes the connection within secs without
 * sending another message, 0 otherwise.
 */
int
h_recv_closed(struct h_conn *c, double secs)
{
	double	 deadline = h_now() + secs;
	char	*line;
	size_t	 len;
	int	 r;

	for (;;) {
		if (take_line(c, &line, &len)) {
			h_fail("got a message instead of EOF: %.200s", line);
			free(line);
			return 0;
		}
		if ((r = read_more(c, deadline)) == 0)
			return c->len == 0;
		if (r == -1)
			return 0;
	}
}

/*
 * Return 1 if no message (and no EOF) arrives for secs seconds; else 0,
 * with the message that came in h_error().
 */
int
h_quiet(struct h_conn *c, double secs)
{
	struct json_object	*obj;

	if ((obj = h_recv(c, secs)) != NULL) {
		h_fail("unexpected message: %s", h_json(obj));
		return 0;
	}
	/* A timeout is what we hoped for; EOF or garbage is not. */
	return timed_out;
}

/* A field of an object, or NULL. */
struct json_object *
h_get(struct json_object *obj, const char *key)
{
	struct json_object	*value;

	if (obj == NULL || !json_object_is_type(obj, json_type_object) ||
	    !json_object_object_get_ex(obj, key, &value))
		return NULL;
	return value;
}

/* Element i of an array, or NULL. */
struct json_object *
h_idx(struct json_object *array, size_t i)
{
	if (array == NULL || !json_object_is_type(array, json_type_array) ||
	    i >= json_object_array_length(array))
		return NULL;
	return json_object_array_get_idx(array, i);
}

/* The length of an array field; 0 if it is missing or not an array. */
size_t
h_len(struct json_object *obj, const char *key)
{
	struct json_object	*array = h_get(obj, key);

	if (array == NULL || !json_object_is_type(array, json_type_array))
		return 0;
	return json_object_array_length(array);
}

/* Whether obj has key with a value of type (json_type_null: present null). */
int
h_is(struct json_object *obj, const char *key, json_type type)
{
	struct json_object	*value;

	if (obj == NULL || !json_object_is_type(obj, json_type_object) ||
	    !json_object_object_get_ex(obj, key, &value))
		return 0;
	return json_object_is_type(value, type);
}

/* A string field, or NULL. */
const char *
h_str(struct json_object *obj, const char *key)
{
	struct json_object	*value = h_get(obj, key);

	if (value == NULL || !json_object_is_type(value, json_type_string))
		return NULL;
	return json_object_get_string(value);
}

/* An integer field, or INT64_MIN if it is missing or not an integer. */
int64_t
h_int(struct json_object *obj, const char *key)
{
	struct json_object	*value = h_get(obj, key);

	if (value == NULL || !json_object_is_type(value, json_type_int))
		return INT64_MIN;
	return json_object_get_int64(value);
}

/* A number field (integer or not), or NAN. */
double
h_num(struct json_object *obj, const char *key)
{
	struct json_object	*value = h_get(obj, key);

	if (value == NULL || (!json_object_is_type(value, json_type_int) &&
	    !json_object_is_type(value, json_type_double)))
		return NAN;
	return json_object_get_double(value);
}

/* Whether a message is a final reply with "ok": true. */
int
h_ok(struct json_object *obj)
{
	struct json_object	*value = h_get(obj, "ok");

	return value != NULL && json_object_is_type(value, json_type_boolean) &&
	    json_object_get_boolean(value);
}

/* Whether a message is an interim event of that kind (and has no "ok"). */
int
h_is_event(struct json_object *obj, const char *event)
{
	const char	*kind = h_str(obj, "event");

	return kind != NULL && strcmp(kind, event) == 0 &&
	    h_get(obj, "ok") == NULL;
}

/* The error code of a failed final reply, or NULL. */
const char *
h_err(struct json_object *obj)
{
	struct json_object	*ok = h_get(obj, "ok");

	if (ok == NULL || !json_object_is_type(ok, json_type_boolean) ||
	    json_object_get_boolean(ok))
		return NULL;
	return h_str(h_get(obj, "error"), "code");
}

/* A message as JSON text for failure messages; the harness error if NULL. */
const char *
h_json(struct json_object *obj)
{
	if (obj == NULL)
		return errbuf[0] != '\0' ? errbuf : "(no message)";
	return json_object_to_json_string_ext(obj, JSON_C_TO_STRING_PLAIN);
}

/* What a holder process reports once it has its lock. */
struct holder_report {
	int	 error;
	int64_t	 token;
};

/* The body of a holder process: take the lock, report, hold until told. */
static void __attribute__((noreturn))
holder_main(int report_fd, int ctl_fd, const char *path, const char *name,
    enum locks_mode mode, const char *client, const char *owner)
{
	struct locks_acquire_opts	 opts = LOCKS_ACQUIRE_OPTS_INIT;
	struct holder_report		 rep = { 0, 0 };
	locks_conn			*conn = NULL;
	char				 c;

	rep.error = locks_connect(path, client, &conn);
	if (rep.error == LOCKS_OK) {
		opts.mode = mode;
		opts.owner = owner;
		rep.error = locks_acquire(conn, name, &opts, &rep.token);
	}
	if (write(report_fd, &rep, sizeof rep) != sizeof rep)
		_exit(2);
	if (rep.error != LOCKS_OK)
		_exit(1);
	while (read(ctl_fd, &c, 1) == -1 && errno == EINTR)
		;
	if (locks_release(conn, name) != LOCKS_OK)
		_exit(3);
	locks_close(conn);
	_exit(0);
}

/*
 * Fork a process that connects through liblocks with the label client,
 * takes name in mode with owner, and holds it until h_holder_release or
 * h_holder_kill.  Returns once it holds the lock, with its token.
 */
int
h_holder_spawn(struct h_holder *h, const char *path, const char *name,
    enum locks_mode mode, const char *client, const char *owner)
{
	return h_holder_spawn_as(h, (uid_t)-1, (gid_t)-1, path, name, mode,
	    client, owner);
}

/* The same, but the holder first becomes uid and gid (unless -1). */
int
h_holder_spawn_as(struct h_holder *h, uid_t uid, gid_t gid,
    const char *path, const char *name, enum locks_mode mode,
    const char *client, const char *owner)
{
	struct holder_report	 rep;
	struct pollfd		 pfd;
	pid_t			 parent = getpid();
	int			 report[2], ctl[2];

	memset(h, 0, sizeof *h);
	if (pipe2(report, O_CLOEXEC) == -1 || pipe2(ctl, O_CLOEXEC) == -1) {
		h_fail("pipe: %s", strerror(errno));
		return -1;
	}
	fflush(NULL);
	if ((h->pid = fork()) == -1) {
		h_fail("fork: %s", strerror(errno));
		return -1;
	}
	if (h->pid == 0) {
		die_with_parent(parent);
		close(report[0]);
		close(ctl[1]);
		if (gid != (gid_t)-1 && (setgroups(0, NULL) == -1 ||
		    setgid(gid) == -1))
			_exit(4);
		if (uid != (uid_t)-1 && setuid(uid) == -1)
			_exit(4);
		holder_main(report[1], ctl[0], path, name, mode, client,
		    owner);
	}
	close(report[1]);
	close(ctl[0]);
	h->ctl = ctl[1];
	pfd.fd = report[0];
	pfd.events = POLLIN;
	if (poll(&pfd, 1, (int)(h_slow(H_REPLY_SECS) * 1000)) != 1 ||
	    read(report[0], &rep, sizeof rep) != sizeof rep) {
		close(report[0]);
		h_holder_kill(h);
		h_fail("the holder of %s did not report", name);
		return -1;
	}
	close(report[0]);
	if (rep.error != LOCKS_OK) {
		h_holder_kill(h);
		h_fail("the holder could not take %s: %s", name,
		    locks_error_code(rep.error));
		return -1;
	}
	h->token = rep.token;
	return 0;
}

/* Tell a holder to release its lock and exit; 0 if it did so cleanly. */
int
h_holder_release(struct h_holder *h)
{
	int	 status;

	if (h->pid <= 0)
		return 0;
	close(h->ctl);
	h->ctl = -1;
	if (h_wait_exit(h->pid, h_slow(H_REPLY_SECS), &status) == -1) {
		h_holder_kill(h);
		return -1;
	}
	h->pid = 0;
	if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
		h_fail("the holder ended with %s", status_text(status));
		return -1;
	}
	return 0;
}

/* Kill a holder with SIGKILL, as a crash would, and reap it. */
int
h_holder_kill(struct h_holder *h)
{
	if (h->pid <= 0)
		return 0;
	kill(h->pid, SIGKILL);
	waitpid(h->pid, NULL, 0);
	if (h->ctl != -1)
		close(h->ctl);
	h->ctl = -1;
	h->pid = 0;
	return 0;
}

/* Run a shell command; its exit status, 128 + signal, or -1. */
int
h_system(const char *fmt, ...)
{
	va_list	 ap;
	char	*cmd;
	pid_t	 parent = getpid(), pid;
	int	 status;

	va_start(ap, fmt);
	if (vasprintf(&cmd, fmt, ap) < 0) {
		va_end(ap);
		h_fail("out of memory");
		return -1;
	}
	va_end(ap);
	fflush(NULL);
	if ((pid = fork()) == -1) {
		free(cmd);
		h_fail("fork: %s", strerror(errno));
		return -1;
	}
	if (pid == 0) {
		die_with_parent(parent);
		execl("/bin/sh", "sh", "-c", cmd, (char *)NULL);
		_exit(127);
	}
	free(cmd);
	while (waitpid(pid, &status, 0) == -1) {
		if (errno != EINTR) {
			h_fail("waitpid: %s", strerror(errno));
			return -1;
		}
	}
	if (WIFEXITED(status))
		return WEXITSTATUS(status);
	if (WIFSIGNALED(status))
		return 128 + WTERMSIG(status);
	return -1;
}

/* Read up to size - 1 bytes of a file into buf, as a string; -1 if not. */
int
h_slurp(const char *path, char *buf, size_t size)
{
	ssize_t	 n;
	int	 fd;

	if ((fd = open(path, O_RDONLY | O_CLOEXEC)) == -1) {
		h_fail("open %s: %s", path, strerror(errno));
		return -1;
	}
	n = read(fd, buf, size - 1);
	close(fd);
	if (n == -1) {
		h_fail("read %s: %s", path, strerror(errno));
		return -1;
	}
	buf[n] = '\0';
	return 0;
}

/* The permission bits of dir/name (name may be NULL), or -1. */
int
h_file_mode(const char *dir, const char *name)
{
	char		 path[PATH_MAX];
	struct stat	 sb;

	snprintf(path, sizeof path, "%s%s%s", dir, name != NULL ? "/" : "",
	    name != NULL ? name : "");
	if (lstat(path, &sb) == -1) {
		h_fail("stat %s: %s", path, strerror(errno));
		return -1;
	}
	return (int)(sb.st_mode & 07777);
}

/*
 * Start "flock <flags> <path> sh -c ..." with a known pid and return once
 * it holds the file.  The command waits on a pipe from the test, so
 * closing h->ctl makes it exit and flock(1) let go at that moment.  flags
 * is one option such as "-x" or "-s" (NULL: none).
 */
int
h_flock_spawn(struct h_flock *h, const char *flags, const char *path)
{
	const char	*argv[8];
	struct pollfd	 pfd;
	pid_t		 parent = getpid();
	char		 buf[16] = "";
	size_t		 n = 0, len = 0;
	ssize_t		 r;
	int		 in[2], out[2];

	memset(h, 0, sizeof *h);
	h->ctl = -1;
	argv[n++] = "flock";
	if (flags != NULL)
		argv[n++] = flags;
	argv[n++] = path;
	argv[n++] = "sh";
	argv[n++] = "-c";
	argv[n++] = "echo locked; read x || true";
	argv[n] = NULL;
	if (pipe2(in, O_CLOEXEC) == -1)
		goto fail_pipe;
	if (pipe2(out, O_CLOEXEC) == -1) {
		close(in[0]);
		close(in[1]);
		goto fail_pipe;
	}
	fflush(NULL);
	if ((h->pid = fork()) == -1) {
		h_fail("fork: %s", strerror(errno));
		close(in[0]);
		close(in[1]);
		close(out[0]);
		close(out[1]);
		return -1;
	}
	if (h->pid == 0) {
		die_with_parent(parent);
		if (dup2(in[0], STDIN_FILENO) == -1 ||
		    dup2(out[1], STDOUT_FILENO) == -1)
			_exit(127);
		execvp("flock", (char *const *)argv);
		_exit(127);
	}
	close(in[0]);
	close(out[1]);
	h->ctl = in[1];

	/* Wait for the "locked" line, which sh prints once flock holds. */
	pfd.fd = out[0];
	pfd.events = POLLIN;
	while (len < sizeof buf - 1 && memchr(buf, '\n', len) == NULL) {
		if (poll(&pfd, 1, (int)(H_REPLY_SECS * 1000)) != 1)
			break;
		if ((r = read(out[0], buf + len, sizeof buf - 1 - len)) <= 0)
			break;
		len += (size_t)r;
	}
	close(out[0]);
	buf[len] = '\0';
	if (strcmp(buf, "locked\n") != 0) {
		h_flock_kill(h);
		h_fail("flock %s %s did not take the lock", flags ? flags : "",
		    path);
		return -1;
	}
	return 0;

fail_pipe:
	h_fail("pipe: %s", strerror(errno));
	return -1;
}

/*
 * Make the flock(1) process let go (unless h->ctl was already closed) and
 * reap it; 0 if it exited 0.
 */
int
h_flock_release(struct h_flock *h)
{
	int	 status;

	if (h->pid <= 0)
		return 0;
	if (h->ctl != -1)
		close(h->ctl);
	h->ctl = -1;
	if (h_wait_exit(h->pid, H_REPLY_SECS, &status) == -1) {
		h_flock_kill(h);
		return -1;
	}
	h->pid = 0;
	if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
		h_fail("flock(1) ended with %s", status_text(status));
		return -1;
	}
	return 0;
}

/* Kill the flock(1) process with SIGKILL and reap it. */
void
h_flock_kill(struct h_flock *h)
{
	if (h->pid > 0) {
		kill(h->pid, SIGKILL);
		waitpid(h->pid, NULL, 0);
	}
	if (h->ctl != -1)
		close(h->ctl);
	h->ctl = -1;
	h->pid = 0;
}

/* How many entries /proc/<pid>/<dir> has ("task", "fd"), or -1. */
int
h_proc_count(pid_t pid, const char *dir)
{
	char		 path[64];
	struct dirent	*de;
	DIR		*d;
	int		 n = 0;

	snprintf(path, sizeof path, "/proc/%ld/%s", (long)pid, dir);
	if ((d = opendir(path)) == NULL) {
		h_fail("opendir %s: %s", path, strerror(errno));
		return -1;
	}
	while ((de = readdir(d)) != NULL) {
		if (strcmp(de->d_name, ".") != 0 &&
		    strcmp(de->d_name, "..") != 0)
			n++;
	}
	closedir(d);
	return n;
}

/*
 * For tests only: Check glue that asserts (see harness.h).
 */

struct h_daemon		 h_srv;
static int		 fixture_failures;

/* Start the TCase's daemon; a failure fails every test of the TCase. */
void
h_daemon_setup(void)
{
	memset(&h_srv, 0, sizeof h_srv);
	if (h_daemon_start(&h_srv) == -1) {
		fprintf(stderr, "fixture: cannot start locksd: %s\n",
		    h_error());
		fixture_failures++;
	}
}

/* Stop it: SIGTERM must make it exit 0 and remove its socket. */
void
h_daemon_teardown(void)
{
	if (h_srv.pid > 0 && h_daemon_stop(&h_srv) == -1) {
		fprintf(stderr, "fixture: %s\n", h_error());
		fixture_failures++;
	}
}

/* Start a daemon for this test alone; it dies with the test's process. */
void
h_own_daemon_start(void)
{
	memset(&h_srv, 0, sizeof h_srv);
	ck_assert_msg(h_daemon_start(&h_srv) == 0, "%s", h_error());
}

/* Stop the test's own daemon, which must exit 0. */
void
h_own_daemon_stop(void)
{
	h_conn_close_all();
	ck_assert_msg(h_daemon_stop(&h_srv) == 0, "%s", h_error());
}

/* A TCase whose tests' connections are closed after each test. */
TCase *
h_tcase(const char *name, double timeout)
{
	TCase	*tc = tcase_create(name);

	tcase_add_checked_fixture(tc, NULL, h_conn_close_all);
	tcase_set_timeout(tc, timeout);
	return tc;
}

/* A TCase with a daemon of its own in h_srv, shared by its tests. */
TCase *
h_daemon_tcase(const char *name, double timeout)
{
	TCase	*tc = tcase_create(name);

	tcase_add_unchecked_fixture(tc, h_daemon_setup, h_daemon_teardown);
	tcase_add_checked_fixture(tc, NULL, h_conn_close_all);
	tcase_set_timeout(tc, timeout);
	return tc;
}

/* Run s, each test in a forked child; main's exit status. */
int
h_run_suite(Suite *s)
{
	SRunner	*sr;
	int	 nfailed;

	if (h_init() == -1) {
		fprintf(stderr, "harness: %s\n", h_error());
		return EXIT_FAILURE;
	}
	signal(SIGPIPE, SIG_IGN);
	sr = srunner_create(s);
	/* Tests must be forked: see the comment at the top of harness.h. */
	srunner_set_fork_status(sr, CK_FORK);
	srunner_run_all(sr, CK_NORMAL);
	nfailed = srunner_ntests_failed(sr) + fixture_failures;
	srunner_free(sr);
	h_finish(nfailed != 0);
	return nfailed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}

/* Open a raw connection to the daemon at path. */
struct h_conn *
h_connect_to(const char *path)
{
	struct h_conn	*c;

	c = h_conn_open(path);
	ck_assert_msg(c != NULL, "%s", h_error());
	return c;
}

/* Open a raw connection to the daemon in h_srv. */
struct h_conn *
h_connect(void)
{
	ck_assert_msg(h_srv.pid > 0, "locksd did not start (see above)");
	return h_connect_to(h_srv.socket_path);
}

/* Take name in mode at once (timeout 0) and return the grant. */
struct json_object *
h_take(struct h_conn *c, const char *name, const char *mode)
{
	struct json_object	*r;

	r = h_request(c, "{\"op\":\"acquire\",\"id\":0,\"name\":\"%s\","
	    "\"mode\":\"%s\",\"timeout\":0}", name, mode);
	EXPECT_OK(r);
	EXPECT_ID(r, 0);
	return r;
}

/* Release name on c. */
void
h_drop(struct h_conn *c, const char *name)
{
	struct json_object	*r;

	r = h_request(c, "{\"op\":\"release\",\"id\":\"rel\",\"name\":\"%s\"}",
	    name);
	EXPECT_OK(r);
}

/* Read the grant that must now come for the acquire with this id. */
struct json_object *
h_granted(struct h_conn *c, int id, double secs)
{
	struct json_object	*r;

	r = h_recv(c, h_slow(secs));
	EXPECT_OK(r);
	EXPECT_ID(r, id);
	ck_assert_msg(h_is(r, "token", json_type_int), "no token: %s",
	    h_json(r));
	return r;
}

/* Holder or waiter i of a list entry or event. */
struct json_object *
h_member(struct json_object *obj, const char *key, size_t i)
{
	struct json_object	*m = h_idx(h_get(obj, key), i);

	ck_assert_msg(m != NULL, "no %s[%zu] in %s", key, i, h_json(obj));
	return m;
}

/* Open a raw connection and say hello with the label client. */
struct h_conn *
h_connect_hello(const char *client)
{
	struct h_conn		*c = h_connect();
	struct json_object	*r;

	r = h_request(c, "{\"op\":\"hello\",\"client\":\"%s\"}", client);
	EXPECT_OK(r);
	return c;
}

/* Queue an acquire with this id and owner, and read its blocking event. */
struct json_object *
h_queue(struct h_conn *c, const char *name, const char *mode, int id,
    const char *owner)
{
	struct json_object	*r;

	r = h_request(c, "{\"op\":\"acquire\",\"id\":%d,\"name\":\"%s\","
	    "\"mode\":\"%s\",\"owner\":\"%s\"}", id, name, mode, owner);
	EXPECT_BLOCKING(r);
	EXPECT_ID(r, id);
	return r;
}

/* The list entry for name, or NULL when the daemon lists nothing. */
struct json_object *
h_listed(struct h_conn *c, const char *name)
{
	struct json_object	*r, *entry;

	r = h_request(c, "{\"op\":\"list\",\"name\":\"%s\"}", name);
	EXPECT_OK(r);
	ck_assert_msg(h_is(r, "locks", json_type_array), "no locks: %s",
	    h_json(r));
	ck_assert_msg(h_len(r, "locks") <= 1, "more than %s: %s", name,
	    h_json(r));
	if ((entry = h_idx(h_get(r, "locks"), 0)) == NULL)
		return NULL;
	ck_assert_str_eq(h_str(entry, "name"), name);
	ck_assert_msg(h_is(entry, "holders", json_type_array) &&
	    h_is(entry, "waiters", json_type_array),
	    "entry without holders and waiters: %s", h_json(entry));
	return entry;
}

/* A string of n copies of c, for padding. */
char *
h_filled(size_t n, char c)
{
	char	*s = malloc(n + 1);

	ck_assert_ptr_nonnull(s);
	memset(s, c, n);
	s[n] = '\0';
	return s;
}

/* The token of an immediate exclusive grant of name, on a new connection. */
int64_t
h_token_from(struct h_daemon *d, const char *name)
{
	struct h_conn	*c = h_connect_to(d->socket_path);
	int64_t		 token;

	token = h_int(h_take(c, name, "exclusive"), "token");
	h_conn_close(c);
	return token;
}

/* Connect through liblocks to the TCase's daemon. */
locks_conn *
h_lib_conn(const char *client)
{
	locks_conn	*c = NULL;
	int		 rc;

	ck_assert_msg(h_srv.pid > 0, "locksd did not start");
	rc = locks_connect(h_srv.socket_path, client, &c);
	ck_assert_msg(rc == LOCKS_OK, "locks_connect: %s: %s",
	    locks_error_code(rc), locks_last_message(NULL));
	return c;
}

/* Send one line with descriptors, as a client of the wire would. */
void
h_send_with_fds(struct h_conn *c, const char *line, const int *fds, size_t n)
{
	char		 control[CMSG_SPACE(sizeof(int) * 4)];
	struct iovec	 iov = { (void *)line, strlen(line) };
	struct msghdr	 msg;
	struct cmsghdr	*cm;

	memset(&msg, 0, sizeof msg);
	memset(control, 0, sizeof control);
	msg.msg_iov = &iov;
	msg.msg_iovlen = 1;
	msg.msg_control = control;
	msg.msg_controllen = CMSG_SPACE(sizeof(int) * n);
	cm = CMSG_FIRSTHDR(&msg);
	cm->cmsg_level = SOL_SOCKET;
	cm->cmsg_type = SCM_RIGHTS;
	cm->cmsg_len = CMSG_LEN(sizeof(int) * n);
	memcpy(CMSG_DATA(cm), fds, sizeof(int) * n);
	ck_assert_int_eq(sendmsg(c->fd, &msg, MSG_NOSIGNAL),
	    (ssize_t)strlen(line));
}
