/*
 * Robustness tests: a real locksd under hostile or heavy clients.
 *
 * - isolation: a connection can neither release nor cancel what another
 *   connection holds or awaits, and sees others only through list;
 * - backpressure: a client that floods requests and never reads its
 *   replies does not grow the daemon's memory, and others are served;
 * - descriptors: out of descriptors, the event loop does not spin, the
 *   clients it has are served, and it accepts again once some leave;
 * - stress: 5,000 concurrent connections take and release locks;
 * - chaos: 40-odd worker processes (chaos_client) take, release, drop
 *   and get killed for over 30 s; an independent checker
 *   (chaos_check.py) then proves from their logs that no two holders
 *   conflicted, that tokens only grew and that every killed holder's
 *   lock went on to someone else.
 *
 * The chaos TCase runs for over 30 s, so ctest runs it as a test of its
 * own (CK_RUN_CASE=chaos) and the rest without it (CK_EXCLUDE_TAGS=long).
 * Figures (memory, CPU time, counts) are printed to stderr, so that a
 * passing run still says how much margin it had.
 */

#include <sys/epoll.h>
#include <sys/file.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <check.h>

#include "harness.h"

#ifndef CHAOS_CLIENT_PATH
#define CHAOS_CLIENT_PATH "chaos_client"
#endif
#ifndef CHAOS_CHECK_PATH
#define CHAOS_CHECK_PATH "chaos_check.py"
#endif

#define MIB	(1024 * 1024)

/* Take name in mode at once (timeout 0); its token. */
static int64_t
take(struct h_conn *c, const char *name, const char *mode)
{
	return h_int(h_take(c, name, mode), "token");
}

/* Queue an acquire with this id and read its blocking event. */
static struct json_object *
queue(struct h_conn *c, const char *name, int id)
{
	struct json_object	*r;

	r = h_request(c, "{\"op\":\"acquire\",\"id\":%d,\"name\":\"%s\"}",
	    id, name);
	EXPECT_BLOCKING(r);
	EXPECT_ID(r, id);
	return r;
}

static struct json_object *
release(struct h_conn *c, const char *name)
{
	return h_request(c, "{\"op\":\"release\",\"id\":\"rel\","
	    "\"name\":\"%s\"}", name);
}

/* The list entry for name, or NULL when nothing is listed. */
static struct json_object *
listed(struct h_conn *c, const char *name)
{
	struct json_object	*r;

	r = h_request(c, "{\"op\":\"list\",\"name\":\"%s\"}", name);
	EXPECT_OK(r);
	ck_assert_msg(h_len(r, "locks") <= 1, "more than %s: %s", name,
	    h_json(r));
	return h_idx(h_get(r, "locks"), 0);
}

/* The daemon's status, asked on c. */
static struct json_object *
status_of(struct h_conn *c)
{
	struct json_object	*r;

	r = h_request(c, "{\"op\":\"status\"}");
	EXPECT_OK(r);
	return r;
}

/*
 * What /proc says about a process.
 */

/* Resident memory in KiB (VmRSS), or -1. */
static long
proc_rss_kib(pid_t pid)
{
	char	 path[64], line[256];
	long	 kib = -1;
	FILE	*fp;

	snprintf(path, sizeof path, "/proc/%ld/status", (long)pid);
	if ((fp = fopen(path, "r")) == NULL)
		return -1;
	while (fgets(line, sizeof line, fp) != NULL) {
		if (sscanf(line, "VmRSS: %ld kB", &kib) == 1)
			break;
	}
	fclose(fp);
	return kib;
}

/* User plus system CPU time in seconds, or -1. */
static double
proc_cpu_secs(pid_t pid)
{
	char			 path[64], buf[1024], *p;
	unsigned long		 utime, stime;
	ssize_t			 n;
	int			 fd;

	snprintf(path, sizeof path, "/proc/%ld/stat", (long)pid);
	if ((fd = open(path, O_RDONLY | O_CLOEXEC)) == -1)
		return -1;
	n = read(fd, buf, sizeof buf - 1);
	close(fd);
	if (n <= 0)
		return -1;
	buf[n] = '\0';
	/* The command may hold spaces and parentheses: skip past its end. */
	if ((p = strrchr(buf, ')')) == NULL ||
	    sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u "
	    "%lu %lu", &utime, &stime) != 2)
		return -1;
	return (double)(utime + stime) / (double)sysconf(_SC_CLK_TCK);
}

/* Wait up to secs for /proc/<pid>/<dir> to have want entries; the count. */
static int
proc_count_settles(pid_t pid, const char *dir, int want, double secs)
{
	double	 deadline = h_now() + secs;
	int	 n;

	for (;;) {
		n = h_proc_count(pid, dir);
		if (n == want || h_now() > deadline)
			return n;
		h_sleep(0.02);
	}
}

/* Size of a file in bytes, or -1. */
static long
file_size(const char *path)
{
	struct stat	 sb;

	return stat(path, &sb) == -1 ? -1 : (long)sb.st_size;
}

/*
 * Whether to skip a test because the daemon runs under $LOCKSD_WRAPPER
 * (valgrind), where its memory, speed and descriptors are not its own.
 */
static int
skip_under_wrapper(const char *test)
{
	const char	*wrapper = getenv("LOCKSD_WRAPPER");

	if (wrapper == NULL || *wrapper == '\0')
		return 0;
	fprintf(stderr, "SKIP %s: meaningless under $LOCKSD_WRAPPER\n", test);
	return 1;
}

/* Raise our soft descriptor limit to the hard one; the new limit. */
static rlim_t
raise_nofile(void)
{
	struct rlimit	 rl;

	if (getrlimit(RLIMIT_NOFILE, &rl) == -1)
		return 0;
	if (rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		if (setrlimit(RLIMIT_NOFILE, &rl) == -1)
			return 0;
	}
	return rl.rlim_cur;
}

/*
 * Isolation: what one connection holds or awaits is its own.  Every
 * connection here belongs to this one test process, so the daemon tells
 * them apart by connection, not by pid or uid.
 */

START_TEST(test_another_connection_cannot_release_a_held_lock)
{
	struct h_conn		*a = h_connect(), *b = h_connect();
	struct json_object	*entry;
	int64_t			 token;

	token = take(a, "iso-held", "exclusive");
	take(a, "iso-held-s", "shared");
	EXPECT_ERROR(release(b, "iso-held"), "not_held");
	EXPECT_ERROR(release(b, "iso-held-s"), "not_held");
	/* A still holds it, with the same grant. */
	entry = listed(b, "iso-held");
	ck_assert_msg(entry != NULL, "iso-held is no longer listed");
	ck_assert_int_eq(h_len(entry, "holders"), 1);
	ck_assert_int_eq(h_int(h_member(entry, "holders", 0), "token"), token);
	ck_assert_int_eq(h_len(listed(b, "iso-held-s"), "holders"), 1);
	/* B cannot take it either, and A alone can give it back. */
	EXPECT_ERROR(h_request(b, "{\"op\":\"acquire\",\"name\":\"iso-held\","
	    "\"timeout\":0}"), "timeout");
	EXPECT_QUIET(a, 0.2);
	EXPECT_OK(release(a, "iso-held"));
	EXPECT_OK(release(a, "iso-held-s"));
	ck_assert_ptr_null(listed(b, "iso-held"));
}
END_TEST

START_TEST(test_another_connection_cannot_cancel_a_wait)
{
	struct h_conn		*h = h_connect(), *a = h_connect();
	struct h_conn		*b = h_connect();
	struct json_object	*entry;

	take(h, "iso-wait", "exclusive");
	queue(a, "iso-wait", 1);
	EXPECT_ERROR(release(b, "iso-wait"), "not_held");
	/* A's wait goes on: no cancelled reply, still queued. */
	EXPECT_QUIET(a, 0.3);
	entry = listed(b, "iso-wait");
	ck_assert_int_eq(h_len(entry, "waiters"), 1);
	ck_assert_int_eq(h_len(entry, "holders"), 1);
	EXPECT_OK(release(h, "iso-wait"));
	h_granted(a, 1, 2);
	EXPECT_QUIET(b, 0.1);
}
END_TEST

START_TEST(test_acquire_of_a_name_another_connection_awaits_is_its_own_wait)
{
	struct h_conn		*h = h_connect(), *a = h_connect();
	struct h_conn		*b = h_connect();
	struct json_object	*r, *entry;

	take(h, "iso-indep", "exclusive");
	r = queue(a, "iso-indep", 1);
	ck_assert_int_eq(h_int(r, "position"), 1);
	r = queue(b, "iso-indep", 2);
	ck_assert_int_eq(h_int(r, "position"), 2);
	/* B's release cancels B's wait only. */
	ck_assert_int_eq(h_send(b, "{\"op\":\"release\",\"id\":3,"
	    "\"name\":\"iso-indep\"}"), 0);
	r = h_recv(b, h_slow(2));
	EXPECT_ERROR(r, "cancelled");
	EXPECT_ID(r, 2);
	r = h_recv(b, h_slow(2));
	EXPECT_OK(r);
	EXPECT_ID(r, 3);
	EXPECT_QUIET(a, 0.2);
	entry = listed(b, "iso-indep");
	ck_assert_int_eq(h_len(entry, "waiters"), 1);
	/* B queues again, behind A; the grants come in that order. */
	r = queue(b, "iso-indep", 4);
	ck_assert_int_eq(h_int(r, "position"), 2);
	EXPECT_OK(release(h, "iso-indep"));
	h_granted(a, 1, 2);
	EXPECT_QUIET(b, 0.2);
	EXPECT_OK(release(a, "iso-indep"));
	h_granted(b, 4, 2);
}
END_TEST

START_TEST(test_others_are_seen_only_through_list)
{
	struct h_conn		*h = h_connect(), *a = h_connect();
	struct h_conn		*b = h_connect();
	struct json_object	*entry;

	take(h, "iso-view", "exclusive");
	queue(a, "iso-view", 1);
	/* B is told nothing of A's wait, nor of its grant. */
	EXPECT_QUIET(b, 0.2);
	entry = listed(b, "iso-view");
	ck_assert_int_eq(h_len(entry, "holders"), 1);
	ck_assert_int_eq(h_len(entry, "waiters"), 1);
	ck_assert_int_eq(h_int(h_member(entry, "waiters", 0), "pid"), getpid());
	ck_assert_int_eq(h_int(h_member(entry, "waiters", 0), "token"),
	    INT64_MIN);
	EXPECT_OK(release(h, "iso-view"));
	h_granted(a, 1, 2);
	EXPECT_QUIET(b, 0.2);
	entry = listed(b, "iso-view");
	ck_assert_int_eq(h_len(entry, "holders"), 1);
	ck_assert_int_eq(h_len(entry, "waiters"), 0);
	/* Nor does A's leaving concern B. */
	h_conn_close(a);
	EXPECT_QUIET(b, 0.2);
	ck_assert_ptr_null(listed(b, "iso-view"));
}
END_TEST

/*
 * Backpressure: the daemon stops reading from a client whose replies
 * pile up unread, so memory stays bounded however much it sends.
 */

#define FLOOD_LIST_NAMES	64
#define FLOOD_SECS		3.0
#define FLOOD_MAX_GROWTH_KIB	(64 * 1024)
#define FLOOD_ATTEMPT		(32 * MIB)	/* what a flood tries to send */
#define PING_FLOOD_MAX_SENT	(8 * MIB)

/* A buffer of copies of one request line, about size bytes long. */
static char *
repeated_lines(const char *line, size_t size, size_t *ret_len)
{
	size_t	 len = strlen(line), n = size / len, i;
	char	*buf;

	buf = malloc(n * len);
	ck_assert_ptr_nonnull(buf);
	for (i = 0; i < n; i++)
		memcpy(buf + i * len, line, len);
	*ret_len = n * len;
	return buf;
}

/* Measures of one flood. */
struct flood {
	size_t	 sent;		/* bytes the daemon let us send */
	long	 rss_before;	/* KiB */
	long	 rss_max;	/* KiB, while flooding */
	int	 pings;		/* round trips of the other client */
	double	 ping_max;	/* the slowest, in seconds */
};

/*
 * ASan holds freed memory back in a quarantine of 256 MiB, which would
 * look like growth; keep it small for a daemon whose memory we measure.
 * Harmless without ASan.  Later options win, so append.
 */
static void
small_asan_quarantine(void)
{
	const char	*old = getenv("ASAN_OPTIONS");
	char		 buf[1024];

	snprintf(buf, sizeof buf, "%s%squarantine_size_mb=4",
	    old != NULL ? old : "", old != NULL && *old != '\0' ? ":" : "");
	ck_assert_int_eq(setenv("ASAN_OPTIONS", buf, 1), 0);
}

/*
 * Send line over and over on fd (nonblocking) for secs, never reading,
 * while another client pings the daemon and its RSS is sampled.
 */
static void
flood(struct h_daemon *d, int fd, const char *line, double secs,
    struct h_conn *other, struct flood *f)
{
	struct json_object	*r;
	struct pollfd		 pfd;
	double			 end = h_now() + secs, next_probe = 0, t0;
	size_t			 len, off = 0;
	ssize_t			 n;
	char			*buf;
	long			 rss;

	buf = repeated_lines(line, 64 * 1024, &len);
	ck_assert_int_ne(fcntl(fd, F_SETFL, O_NONBLOCK), -1);
	memset(f, 0, sizeof *f);
	f->rss_before = f->rss_max = proc_rss_kib(d->pid);
	ck_assert_int_gt(f->rss_before, 0);
	while (h_now() < end && f->sent < FLOOD_ATTEMPT) {
		n = send(fd, buf + off, len - off, MSG_NOSIGNAL);
		if (n > 0) {
			f->sent += (size_t)n;
			off = (off + (size_t)n) % len;
		} else {
			ck_assert_msg(errno == EAGAIN || errno == EINTR,
			    "flood send: %s", strerror(errno));
			pfd.fd = fd;
			pfd.events = POLLOUT;
			poll(&pfd, 1, 20);
		}
		if (h_now() < next_probe)
			continue;
		next_probe = h_now() + 0.1;
		rss = proc_rss_kib(d->pid);
		if (rss > f->rss_max)
			f->rss_max = rss;
		t0 = h_now();
		r = h_request(other, "{\"op\":\"ping\",\"id\":%d}", f->pings);
		EXPECT_OK(r);
		EXPECT_ID(r, f->pings);
		if (h_now() - t0 > f->ping_max)
			f->ping_max = h_now() - t0;
		f->pings++;
	}
	/* Whatever line is half sent stays so: the daemon never sees it. */
	free(buf);
	rss = proc_rss_kib(d->pid);
	if (rss > f->rss_max)
		f->rss_max = rss;
}

START_TEST(test_flood_of_list_requests_never_read_keeps_memory_bounded)
{
	struct h_daemon		 d;
	struct h_conn		*holder, *waiter, *other;
	struct json_object	*r;
	struct flood		 f;
	char			 owner[201];
	size_t			 reply_len;
	int			 i, fd;

	if (skip_under_wrapper(__func__))
		return;
	small_asan_quarantine();
	memset(&d, 0, sizeof d);
	ck_assert_msg(h_daemon_start(&d) == 0, "%s", h_error());
	holder = h_connect_to(d.socket_path);
	waiter = h_connect_to(d.socket_path);
	other = h_connect_to(d.socket_path);
	/* Make every list reply big: many locks, long owners, waiters. */
	memset(owner, 'o', sizeof owner - 1);
	owner[sizeof owner - 1] = '\0';
	for (i = 0; i < FLOOD_LIST_NAMES; i++) {
		r = h_request(holder, "{\"op\":\"acquire\","
		    "\"name\":\"bp-%02d\",\"owner\":\"%s\",\"timeout\":0}",
		    i, owner);
		EXPECT_OK(r);
		ck_assert_int_eq(h_send(waiter, "{\"op\":\"acquire\","
		    "\"name\":\"bp-%02d\",\"owner\":\"%s\","
		    "\"notify_after\":3600}", i, owner), 0);
	}
	r = h_request(other, "{\"op\":\"list\"}");
	EXPECT_OK(r);
	ck_assert_int_eq(h_len(r, "locks"), FLOOD_LIST_NAMES);
	reply_len = strlen(h_json(r)) + 1;
	/* Let the allocator settle on its working set first. */
	for (i = 0; i < 50; i++)
		EXPECT_OK(h_request(other, "{\"op\":\"list\"}"));

	ck_assert_int_ne(fd = h_unix_connect(d.socket_path), -1);
	flood(&d, fd, "{\"op\":\"list\"}\n", FLOOD_SECS, other, &f);
	fprintf(stderr, "list flood: %zu bytes sent in %.0f s (%zu requests, "
	    "%.0f MiB of replies if all were answered); daemon RSS %ld KiB "
	    "before, %ld KiB at most during; %d pings, slowest %.3f s\n",
	    f.sent, FLOOD_SECS, f.sent / 14, (double)(f.sent / 14) *
	    (double)reply_len / MIB, f.rss_before, f.rss_max, f.pings,
	    f.ping_max);
	ck_assert_msg(f.rss_max - f.rss_before < FLOOD_MAX_GROWTH_KIB,
	    "the daemon grew from %ld to %ld KiB", f.rss_before, f.rss_max);
	ck_assert_msg(f.sent < FLOOD_ATTEMPT,
	    "the daemon read all %zu bytes of the flood", f.sent);
	ck_assert_msg(f.sent > 64 * 1024, "the flood hardly started");
	ck_assert_int_ge(f.pings, 10);
	ck_assert_msg(f.ping_max < 2, "a ping took %.3f s", f.ping_max);

	/* The flooder leaves with its replies unread: it is let go. */
	close(fd);
	for (i = 0; i < 100; i++) {
		r = status_of(other);
		if (h_int(r, "connections") == 3)
			break;
		h_sleep(0.05);
	}
	ck_assert_msg(h_int(r, "connections") == 3,
	    "the flooder's connection is still open: %s", h_json(r));
	ck_assert_int_eq(h_int(r, "locks_held"), FLOOD_LIST_NAMES);
	ck_assert_int_eq(h_int(r, "waiters"), FLOOD_LIST_NAMES);
	h_conn_close(holder);
	h_conn_close(waiter);
	h_conn_close(other);
	ck_assert_msg(h_daemon_stop(&d) == 0, "%s", h_error());
}
END_TEST

START_TEST(test_flood_of_pings_is_paused_and_every_request_is_answered)
{
	static const char	 ping[] = "{\"op\":\"ping\"}\n";
	struct h_daemon		 d;
	struct h_conn		*other;
	struct pollfd		 pfd;
	struct flood		 f;
	size_t			 linelen = sizeof ping - 1, tail, lines;
	size_t			 answered = 0, got = 0, i;
	double			 deadline;
	ssize_t			 n;
	char			 buf[65536], line[64];
	int			 fd;

	if (skip_under_wrapper(__func__))
		return;
	small_asan_quarantine();
	memset(&d, 0, sizeof d);
	ck_assert_msg(h_daemon_start(&d) == 0, "%s", h_error());
	other = h_connect_to(d.socket_path);
	ck_assert_int_ne(fd = h_unix_connect(d.socket_path), -1);
	flood(&d, fd, ping, 2.0, other, &f);
	fprintf(stderr, "ping flood: %zu bytes sent in 2 s; daemon RSS %ld "
	    "KiB before, %ld KiB at most during; %d pings, slowest %.3f s\n",
	    f.sent, f.rss_before, f.rss_max, f.pings, f.ping_max);
	/*
	 * A ping's reply is longer than the ping, so with reading paused at
	 * 1 MiB of output the daemon takes in less than that, plus what
	 * socket buffers hold.  Unpaused, it takes in tens of MiB.
	 */
	ck_assert_msg(f.sent < PING_FLOOD_MAX_SENT, "the daemon read %zu "
	    "bytes of pings without a reply read", f.sent);
	ck_assert_msg(f.rss_max - f.rss_before < FLOOD_MAX_GROWTH_KIB,
	    "the daemon grew from %ld to %ld KiB", f.rss_before, f.rss_max);
	ck_assert_msg(f.ping_max < 2, "a ping took %.3f s", f.ping_max);

	/* Finish the half-sent line, then read: every request is answered. */
	tail = (linelen - f.sent % linelen) % linelen;
	lines = (f.sent + tail) / linelen;
	deadline = h_now() + h_slow(30);
	while (answered < lines && h_now() < deadline) {
		pfd.fd = fd;
		pfd.events = POLLIN | (tail > 0 ? POLLOUT : 0);
		if (poll(&pfd, 1, 1000) <= 0)
			continue;
		if ((pfd.revents & POLLOUT) && tail > 0) {
			n = send(fd, ping + linelen - tail, tail, MSG_NOSIGNAL);
			if (n > 0)
				tail -= (size_t)n;
		}
		if (!(pfd.revents & POLLIN))
			continue;
		n = recv(fd, buf, sizeof buf, 0);
		ck_assert_msg(n > 0, "the daemon closed the flooder after %zu "
		    "of %zu replies", answered, lines);
		for (i = 0; i < (size_t)n; i++) {
			if (buf[i] != '\n') {
				if (got < sizeof line - 1)
					line[got++] = buf[i];
				continue;
			}
			line[got] = '\0';
			ck_assert_msg(strstr(line, "\"ok\":true") != NULL,
			    "reply %zu: %s", answered, line);
			answered++;
			got = 0;
		}
	}
	fprintf(stderr, "ping flood: %zu requests, %zu replies\n", lines,
	    answered);
	ck_assert_msg(answered == lines, "%zu of %zu requests answered",
	    answered, lines);
	EXPECT_QUIET(other, 0);
	close(fd);
	h_conn_close(other);
	ck_assert_msg(h_daemon_stop(&d) == 0, "%s", h_error());
}
END_TEST

/*
 * Out of descriptors: idle connections take every descriptor the daemon
 * may have.  Complements test_limit_when_the_daemon_runs_out_of_descriptors
 * (test_lifecycle), where lock files run out instead.
 */

#define EMFILE_NOFILE	64
#define EMFILE_PENDING	3	/* connections left in the listen queue */

/* Whether a ping on c is answered within secs. */
static int
answers_ping(struct h_conn *c, int id, double secs)
{
	struct json_object	*r;

	if (h_send(c, "{\"op\":\"ping\",\"id\":%d}", id) == -1)
		return 0;
	r = h_recv(c, secs);
	return h_ok(r) && h_int(r, "id") == id;
}

/* How many write(2) calls the process has made (syscw), or -1. */
static long
proc_write_calls(pid_t pid)
{
	char	 path[64], line[128];
	long	 n = -1;
	FILE	*fp;

	snprintf(path, sizeof path, "/proc/%ld/io", (long)pid);
	if ((fp = fopen(path, "r")) == NULL)
		return -1;
	while (fgets(line, sizeof line, fp) != NULL) {
		if (sscanf(line, "syscw: %ld", &n) == 1)
			break;
	}
	fclose(fp);
	return n;
}

/*
 * Exhaust the descriptors of the daemon d (running under EMFILE_NOFILE)
 * with idle connections, then prove that for 2 s its loop idles, that
 * its clients are served, and that once some leave it accepts again.
 */
static void
exhaust_descriptors(struct h_daemon *d, const char *what)
{
	struct h_conn		*first, *late, *idle[EMFILE_NOFILE];
	struct h_conn		*pending[EMFILE_PENDING];
	struct json_object	*r;
	double			 cpu0, cpu1;
	long			 log0, log1, writes0, writes1;
	int			 i, nidle = 0;

	first = h_connect_to(d->socket_path);
	ck_assert(answers_ping(first, 0, 2));

	/* Connect until one is not accepted: it waits in the listen queue. */
	for (;;) {
		ck_assert_msg(nidle < EMFILE_NOFILE,
		    "%d connections and descriptors have not run out", nidle);
		idle[nidle] = h_connect_to(d->socket_path);
		if (!answers_ping(idle[nidle], 1, 1))
			break;
		nidle++;
	}
	pending[0] = idle[nidle];
	for (i = 1; i < EMFILE_PENDING; i++) {
		pending[i] = h_connect_to(d->socket_path);
		ck_assert_int_eq(h_send(pending[i],
		    "{\"op\":\"ping\",\"id\":1}"), 0);
	}

	/*
	 * Two seconds out of descriptors cost next to no CPU time, and few
	 * system calls: a healthy daemon logs about once a second.
	 */
	cpu0 = proc_cpu_secs(d->pid);
	writes0 = proc_write_calls(d->pid);
	log0 = file_size(d->log_path);
	ck_assert(cpu0 >= 0);
	h_sleep(2);
	cpu1 = proc_cpu_secs(d->pid);
	writes1 = proc_write_calls(d->pid);
	log1 = file_size(d->log_path);
	fprintf(stderr, "descriptors (%s): %d connections accepted under a "
	    "limit of %d; in 2 s without descriptors: %.2f s of CPU time, "
	    "%ld write calls, %ld bytes of log\n", what, nidle + 1,
	    EMFILE_NOFILE, cpu1 - cpu0, writes1 - writes0, log1 - log0);
	ck_assert_msg(cpu1 - cpu0 < 0.5, "the daemon used %.2f s of CPU in "
	    "2 s: its loop spins", cpu1 - cpu0);
	ck_assert_msg(writes0 < 0 || writes1 - writes0 < 100, "the daemon "
	    "made %ld write calls in 2 s: its loop spins", writes1 - writes0);
	ck_assert_msg(log0 < 0 || log1 - log0 < 16 * 1024, "the daemon logged "
	    "%ld bytes in 2 s", log1 - log0);

	/* Its clients are served meanwhile, and still nobody new. */
	for (i = 0; i < 3; i++)
		ck_assert(answers_ping(first, 10 + i, 2));
	ck_assert(answers_ping(idle[nidle - 1], 2, 2));
	r = h_request(first, "{\"op\":\"status\"}");
	EXPECT_OK(r);
	ck_assert_int_eq(h_int(r, "connections"), nidle + 1);
	for (i = 0; i < EMFILE_PENDING; i++)
		EXPECT_QUIET(pending[i], 0);

	/* Some leave: the queued ones are accepted and answered. */
	for (i = 0; i < EMFILE_PENDING + 5; i++)
		h_conn_close(idle[--nidle]);
	for (i = 0; i < EMFILE_PENDING; i++) {
		r = h_recv(pending[i], 3);
		EXPECT_OK(r);
		EXPECT_ID(r, 1);
	}
	late = h_connect_to(d->socket_path);
	ck_assert(answers_ping(late, 3, 3));
	h_conn_close_all();
}

START_TEST(test_out_of_descriptors_the_loop_idles_and_accepts_again)
{
	struct h_daemon	 d;

	if (skip_under_wrapper(__func__))
		return;
	memset(&d, 0, sizeof d);
	d.nofile = EMFILE_NOFILE;
	ck_assert_msg(h_daemon_start(&d) == 0, "%s", h_error());
	exhaust_descriptors(&d, "log to a file");
	ck_assert_msg(h_daemon_stop(&d) == 0, "%s", h_error());
}
END_TEST

/*
 * The same when writing its log fails (stderr on a full disk, or a pipe
 * nobody reads): the failed accept must still pause accepting.
 */
START_TEST(test_out_of_descriptors_with_a_failing_log_the_loop_idles)
{
	struct h_daemon	 d;
	char		 dir[128], log_path[sizeof d.log_path];
	pid_t		 pid;

	if (skip_under_wrapper(__func__))
		return;
	memset(&d, 0, sizeof d);
	d.nofile = EMFILE_NOFILE;
	snprintf(dir, sizeof dir, "%s/full-XXXXXX", h_run_dir());
	ck_assert_ptr_nonnull(mkdtemp(dir));
	ck_assert_int_eq(h_daemon_paths(&d, dir), 0);
	/* Only for the spawn: the harness must never read /dev/full back. */
	memcpy(log_path, d.log_path, sizeof log_path);
	snprintf(d.log_path, sizeof d.log_path, "/dev/full");
	pid = h_daemon_spawn(&d);
	memcpy(d.log_path, log_path, sizeof d.log_path);
	ck_assert_int_ne(pid, -1);
	ck_assert_msg(h_daemon_wait_ready(&d, pid) == 0, "%s", h_error());
	exhaust_descriptors(&d, "log to /dev/full");
	ck_assert_msg(h_daemon_stop(&d) == 0, "%s", h_error());
}
END_TEST

/*
 * Stress: 5,000 connections at once, each taking and releasing locks on
 * a few dozen shared names, driven by one epoll loop.
 */

#define STRESS_CONNS	5000
#define STRESS_CYCLES	10
#define STRESS_NAMES	50

struct stress_conn {
	int	 fd;
	int	 cycle;
	int	 releasing;	/* waiting for the release's reply */
	char	*buf;
	size_t	 len;
	size_t	 cap;
};

struct stress {
	struct stress_conn	*conns;
	int			 done;
	int			 errors;
	char			 first_error[512];
	int64_t			 grants;
};

static void __attribute__((format(printf, 2, 3)))
stress_error(struct stress *s, const char *fmt, ...)
{
	va_list	 ap;

	if (s->errors++ == 0) {
		va_start(ap, fmt);
		vsnprintf(s->first_error, sizeof s->first_error, fmt, ap);
		va_end(ap);
	}
}

/* Send connection i's next request: an acquire, or a release. */
static void
stress_send(struct stress *s, int i)
{
	struct stress_conn	*c = &s->conns[i];
	char			 line[160];
	int			 name, len;

	name = (i * 7 + c->cycle * 13) % STRESS_NAMES;
	if (c->releasing)
		len = snprintf(line, sizeof line, "{\"op\":\"release\","
		    "\"id\":%d,\"name\":\"st-%d\"}\n", c->cycle, name);
	else
		len = snprintf(line, sizeof line, "{\"op\":\"acquire\","
		    "\"id\":%d,\"name\":\"st-%d\",\"mode\":\"%s\","
		    "\"notify_after\":600}\n", c->cycle, name,
		    (i + c->cycle) % 4 == 0 ? "exclusive" : "shared");
	/* One request in flight per connection: a blocking send never waits. */
	if (send(c->fd, line, (size_t)len, MSG_NOSIGNAL) != len)
		stress_error(s, "conn %d: send: %s", i, strerror(errno));
}

/* Handle one reply line on connection i. */
static void
stress_reply(struct stress *s, int i, const char *line)
{
	struct stress_conn	*c = &s->conns[i];
	struct json_object	*r;

	if ((r = json_tokener_parse(line)) == NULL) {
		stress_error(s, "conn %d: not JSON: %.200s", i, line);
		return;
	}
	if (h_get(r, "event") != NULL) {
		json_object_put(r);
		return;
	}
	if (!h_ok(r) || h_int(r, "id") != c->cycle ||
	    (!c->releasing && !h_is(r, "token", json_type_int))) {
		stress_error(s, "conn %d cycle %d: %s", i, c->cycle, line);
		json_object_put(r);
		return;
	}
	json_object_put(r);
	if (!c->releasing) {
		s->grants++;
		c->releasing = 1;
	} else {
		c->releasing = 0;
		if (++c->cycle == STRESS_CYCLES) {
			s->done++;
			return;
		}
	}
	stress_send(s, i);
}

/* Read what connection i has for us and handle every whole line. */
static void
stress_read(struct stress *s, int i)
{
	struct stress_conn	*c = &s->conns[i];
	char			*nl, *p;
	ssize_t			 n;

	if (c->cap - c->len < 4096) {
		c->cap += 8192;
		if ((p = realloc(c->buf, c->cap)) == NULL) {
			stress_error(s, "out of memory");
			return;
		}
		c->buf = p;
	}
	n = recv(c->fd, c->buf + c->len, c->cap - c->len - 1, MSG_DONTWAIT);
	if (n == -1 && (errno == EAGAIN || errno == EINTR))
		return;
	if (n <= 0) {
		stress_error(s, "conn %d: the daemon closed it (%s)", i,
		    n == 0 ? "EOF" : strerror(errno));
		return;
	}
	c->len += (size_t)n;
	c->buf[c->len] = '\0';
	p = c->buf;
	while ((nl = strchr(p, '\n')) != NULL) {
		*nl = '\0';
		stress_reply(s, i, p);
		p = nl + 1;
	}
	c->len -= (size_t)(p - c->buf);
	memmove(c->buf, p, c->len);
}

START_TEST(test_five_thousand_concurrent_connections_take_and_release)
{
	struct h_daemon		 d;
	struct h_conn		*probe;
	struct json_object	*r = NULL;
	struct epoll_event	 ev, events[256];
	struct stress		 s;
	double			 t0, t_connected, t_done, deadline;
	rlim_t			 limit;
	int			 ep, i, n;

	if (skip_under_wrapper(__func__))
		return;
	limit = raise_nofile();
	if (limit < STRESS_CONNS + 256) {
		fprintf(stderr, "SKIP %s: the hard limit on descriptors is "
		    "%llu; %d connections need %d\n", __func__,
		    (unsigned long long)limit, STRESS_CONNS,
		    STRESS_CONNS + 256);
		return;
	}
	memset(&d, 0, sizeof d);
	/* All 5,000 come from this one uid. */
	d.extra[0] = "--max-clients-per-uid";
	d.extra[1] = "10000";
	ck_assert_msg(h_daemon_start(&d) == 0, "%s", h_error());
	probe = h_connect_to(d.socket_path);
	memset(&s, 0, sizeof s);
	s.conns = calloc(STRESS_CONNS, sizeof *s.conns);
	ck_assert_ptr_nonnull(s.conns);
	ck_assert_int_ne(ep = epoll_create1(EPOLL_CLOEXEC), -1);

	/* All of them connect first, and stay. */
	t0 = h_now();
	for (i = 0; i < STRESS_CONNS; i++) {
		s.conns[i].fd = h_unix_connect(d.socket_path);
		ck_assert_msg(s.conns[i].fd != -1, "connection %d: %s", i,
		    strerror(errno));
		ev.events = EPOLLIN;
		ev.data.u32 = (uint32_t)i;
		ck_assert_int_eq(epoll_ctl(ep, EPOLL_CTL_ADD, s.conns[i].fd,
		    &ev), 0);
	}
	for (deadline = h_now() + h_slow(20); h_now() < deadline;
	    h_sleep(0.05)) {
		r = status_of(probe);
		if (h_int(r, "connections") == STRESS_CONNS + 1)
			break;
	}
	ck_assert_msg(h_int(r, "connections") == STRESS_CONNS + 1,
	    "not all connected: %s", h_json(r));
	t_connected = h_now();

	/* Then all of them take and release, at once. */
	for (i = 0; i < STRESS_CONNS; i++)
		stress_send(&s, i);
	deadline = h_now() + h_slow(90);
	while (s.done < STRESS_CONNS && s.errors == 0 && h_now() < deadline) {
		n = epoll_wait(ep, events, 256, 1000);
		for (i = 0; i < n; i++)
			stress_read(&s, (int)events[i].data.u32);
	}
	t_done = h_now();
	fprintf(stderr, "stress: %d connections open at once, %d cycles "
	    "each: connected in %.2f s; %" PRId64 " grants and releases in "
	    "%.2f s; %d connections done, %d errors\n", STRESS_CONNS,
	    STRESS_CYCLES, t_connected - t0, s.grants, t_done - t_connected,
	    s.done, s.errors);
	ck_assert_msg(s.errors == 0, "%d errors; the first: %s", s.errors,
	    s.first_error);
	ck_assert_msg(s.done == STRESS_CONNS, "only %d of %d connections "
	    "finished in time", s.done, STRESS_CONNS);

	r = status_of(probe);
	ck_assert_int_eq(h_int(r, "connections"), STRESS_CONNS + 1);
	ck_assert_int_eq(h_int(r, "locks_held"), 0);
	ck_assert_int_eq(h_int(r, "waiters"), 0);
	ck_assert_int_eq(h_int(r, "acquired_total"),
	    STRESS_CONNS * STRESS_CYCLES);
	for (i = 0; i < STRESS_CONNS; i++) {
		close(s.conns[i].fd);
		free(s.conns[i].buf);
	}
	free(s.conns);
	close(ep);
	for (deadline = h_now() + h_slow(20); h_now() < deadline;
	    h_sleep(0.05)) {
		r = status_of(probe);
		if (h_int(r, "connections") == 1)
			break;
	}
	ck_assert_msg(h_int(r, "connections") == 1,
	    "connections linger: %s", h_json(r));
	h_conn_close(probe);
	ck_assert_msg(h_daemon_stop(&d) == 0, "%s", h_error());
}
END_TEST

/*
 * Chaos: worker processes (chaos_client) over a handful of names, killed
 * at random and replaced, for over 30 s.  The driver logs its spawns and
 * kills beside the workers' records; chaos_check.py judges the log.
 */

#define CHAOS_WORKERS	44
#define CHAOS_NAMES	5
#define CHAOS_SECS	32.0
#define CHAOS_CALM_SECS	4.0	/* no kills at the end: handoffs finish */
#define CHAOS_STOP_SECS	10.0	/* for workers to finish after SIGTERM */

struct chaos {
	const char	*socket_path;
	char		 log_path[256];
	int		 log_fd;
	pid_t		 pids[CHAOS_WORKERS];
	int		 ids[CHAOS_WORKERS];
	int		 next_id;
	int		 nkills[3];	/* holder, waiter, any */
	int		 bad_exits;
	unsigned int	 rng;
};

static const char *const chaos_why[] = { "holder", "waiter", "any" };

static int64_t
mono_ns(void)
{
	struct timespec	 ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* Append one driver record; t is taken now unless given. */
static void __attribute__((format(printf, 4, 5)))
chaos_log(struct chaos *ch, const char *kind, int64_t t, const char *fmt,
    ...)
{
	char	 line[256];
	va_list	 ap;
	int	 n;

	n = snprintf(line, sizeof line, "%s t=%" PRId64 " ", kind,
	    t != 0 ? t : mono_ns());
	va_start(ap, fmt);
	n += vsnprintf(line + n, sizeof line - (size_t)n - 1, fmt, ap);
	va_end(ap);
	line[n++] = '\n';
	ck_assert_int_eq(write(ch->log_fd, line, (size_t)n), n);
}

/* A wait status as the checker reads it: exit0, signal9. */
static const char *
chaos_status(int status)
{
	static char	 buf[32];

	if (WIFEXITED(status))
		snprintf(buf, sizeof buf, "exit%d", WEXITSTATUS(status));
	else if (WIFSIGNALED(status))
		snprintf(buf, sizeof buf, "signal%d", WTERMSIG(status));
	else
		snprintf(buf, sizeof buf, "status%#x", status);
	return buf;
}

/* Start a worker in slot i. */
static void
chaos_spawn(struct chaos *ch, int i)
{
	char	 id[16], seed[32], names[16];
	pid_t	 parent = getpid(), pid;
	int	 w = ch->next_id++;

	snprintf(id, sizeof id, "%d", w);
	snprintf(seed, sizeof seed, "%u", (unsigned int)(mono_ns() ^
	    (w * 2654435761u)));
	snprintf(names, sizeof names, "%d", CHAOS_NAMES);
	fflush(NULL);
	ck_assert_int_ne(pid = fork(), -1);
	if (pid == 0) {
		if (prctl(PR_SET_PDEATHSIG, SIGKILL) == -1 ||
		    getppid() != parent)
			_exit(127);
		execl(CHAOS_CLIENT_PATH, "chaos_client", ch->socket_path,
		    ch->log_path, id, seed, names, (char *)NULL);
		_exit(127);
	}
	ch->pids[i] = pid;
	ch->ids[i] = w;
	chaos_log(ch, "spawn", 0, "w=%d pid=%ld", w, (long)pid);
}

/* Reap workers that ended by themselves: none should; replace them. */
static void
chaos_reap(struct chaos *ch)
{
	pid_t	 pid;
	int	 i, status;

	while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
		for (i = 0; i < CHAOS_WORKERS; i++) {
			if (ch->pids[i] != pid)
				continue;
			chaos_log(ch, "reap", 0, "w=%d pid=%ld status=%s",
			    ch->ids[i], (long)pid, chaos_status(status));
			fprintf(stderr, "chaos: worker %d ended by itself "
			    "(%s)\n", ch->ids[i], chaos_status(status));
			ch->bad_exits++;
			chaos_spawn(ch, i);
		}
	}
}

/* The slot of the worker with this pid, or -1. */
static int
chaos_slot(const struct chaos *ch, pid_t pid)
{
	int	 i;

	for (i = 0; i < CHAOS_WORKERS; i++) {
		if (ch->pids[i] == pid)
			return i;
	}
	return -1;
}

/*
 * Pick a victim: mostly a holder of a name somebody waits for (so the
 * name must go on to someone), else a waiter, else anyone.
 */
static int
chaos_pick(struct chaos *ch, locks_conn *driver, int *ret_why)
{
	const locks_lock	*lock;
	locks_list		*list;
	int			 cand[CHAOS_WORKERS * 4], ncand = 0, slot;
	int			 want = (int)(rand_r(&ch->rng) % 100);
	size_t			 i, j;

	*ret_why = want < 55 ? 0 : want < 85 ? 1 : 2;
	if (*ret_why != 2 &&
	    locks_list_get(driver, NULL, &list) == LOCKS_OK) {
		for (i = 0; i < locks_list_count(list); i++) {
			lock = locks_list_lock(list, i);
			if (*ret_why == 0 && locks_lock_nwaiters(lock) == 0)
				continue;
			if (*ret_why == 0) {
				for (j = 0; j < locks_lock_nholders(lock);
				    j++) {
					slot = chaos_slot(ch, locks_holder_pid(
					    locks_lock_holder(lock, j)));
					if (slot != -1)
						cand[ncand++] = slot;
				}
			} else {
				for (j = 0; j < locks_lock_nwaiters(lock);
				    j++) {
					slot = chaos_slot(ch, locks_holder_pid(
					    locks_lock_waiter(lock, j)));
					if (slot != -1 &&
					    ncand < (int)(sizeof cand /
					    sizeof cand[0]))
						cand[ncand++] = slot;
				}
			}
		}
		locks_list_free(list);
	}
	if (ncand == 0) {
		*ret_why = 2;
		return (int)(rand_r(&ch->rng) % CHAOS_WORKERS);
	}
	return cand[rand_r(&ch->rng) % (unsigned int)ncand];
}

/* SIGKILL the worker in slot i, log it, and start another. */
static void
chaos_kill(struct chaos *ch, int i, int why)
{
	pid_t	 pid = ch->pids[i];
	int64_t	 t;
	int	 status;

	/* Taken before kill(2): the worker held what it held until then. */
	t = mono_ns();
	ck_assert_int_eq(kill(pid, SIGKILL), 0);
	ck_assert_int_eq(waitpid(pid, &status, 0), pid);
	chaos_log(ch, "kill", t, "w=%d pid=%ld why=%s", ch->ids[i],
	    (long)pid, chaos_why[why]);
	chaos_log(ch, "reap", 0, "w=%d pid=%ld status=%s", ch->ids[i],
	    (long)pid, chaos_status(status));
	ch->nkills[why]++;
	chaos_spawn(ch, i);
}

/* SIGTERM every worker and reap them; the number that did not finish. */
static int
chaos_stop(struct chaos *ch)
{
	double	 deadline = h_now() + h_slow(CHAOS_STOP_SECS);
	pid_t	 pid;
	int	 i, left = CHAOS_WORKERS, status;

	chaos_log(ch, "stop", 0, "workers=%d", CHAOS_WORKERS);
	for (i = 0; i < CHAOS_WORKERS; i++)
		kill(ch->pids[i], SIGTERM);
	while (left > 0 && h_now() < deadline) {
		if ((pid = waitpid(-1, &status, WNOHANG)) <= 0) {
			h_sleep(0.01);
			continue;
		}
		if ((i = chaos_slot(ch, pid)) == -1)
			continue;
		chaos_log(ch, "reap", 0, "w=%d pid=%ld status=%s", ch->ids[i],
		    (long)pid, chaos_status(status));
		ch->pids[i] = 0;
		left--;
	}
	for (i = 0; i < CHAOS_WORKERS; i++) {
		if (ch->pids[i] == 0)
			continue;
		fprintf(stderr, "chaos: worker %d (pid %ld) did not finish "
		    "within %.0f s of SIGTERM\n", ch->ids[i],
		    (long)ch->pids[i], h_slow(CHAOS_STOP_SECS));
		kill(ch->pids[i], SIGKILL);
		waitpid(ch->pids[i], NULL, 0);
	}
	return left;
}

START_TEST(test_chaos_keeps_exclusion_tokens_and_handoff_under_kills)
{
	struct h_daemon	 d;
	struct chaos	 ch;
	locks_conn	*driver = NULL;
	locks_status	*st = NULL;
	double		 start, deadline;
	int		 i, fds0, tasks0, fds1, tasks1, stuck, rc;

	memset(&d, 0, sizeof d);
	ck_assert_msg(h_daemon_start(&d) == 0, "%s", h_error());
	memset(&ch, 0, sizeof ch);
	ch.socket_path = d.socket_path;
	ch.rng = (unsigned int)mono_ns();
	snprintf(ch.log_path, sizeof ch.log_path, "%s/chaos.log", d.dir);
	ch.log_fd = open(ch.log_path, O_WRONLY | O_CREAT | O_APPEND |
	    O_CLOEXEC, 0644);
	ck_assert_int_ne(ch.log_fd, -1);
	ck_assert_int_eq(locks_connect(d.socket_path, "driver", &driver),
	    LOCKS_OK);
	fds0 = h_proc_count(d.pid, "fd");
	tasks0 = h_proc_count(d.pid, "task");
	ck_assert(fds0 > 0 && tasks0 > 0);

	start = h_now();
	chaos_log(&ch, "start", 0, "workers=%d names=%d", CHAOS_WORKERS,
	    CHAOS_NAMES);
	for (i = 0; i < CHAOS_WORKERS; i++)
		chaos_spawn(&ch, i);
	while (h_now() < start + CHAOS_SECS) {
		h_sleep(0.05 + (rand_r(&ch.rng) % 200) / 1000.0);
		chaos_reap(&ch);
		if (h_now() < start + CHAOS_SECS - CHAOS_CALM_SECS) {
			int	 why, slot = chaos_pick(&ch, driver, &why);

			chaos_kill(&ch, slot, why);
		}
	}
	stuck = chaos_stop(&ch);
	fprintf(stderr, "chaos: %.1f s, %d workers at a time, %d started, "
	    "%d killed (%d holders, %d waiters, %d at random), %d ended by "
	    "themselves, %d stuck at the end\n", h_now() - start,
	    CHAOS_WORKERS, ch.next_id, ch.nkills[0] + ch.nkills[1] +
	    ch.nkills[2], ch.nkills[0], ch.nkills[1], ch.nkills[2],
	    ch.bad_exits, stuck);
	ck_assert_msg(stuck == 0, "%d workers did not finish (see above)",
	    stuck);
	ck_assert_msg(ch.bad_exits == 0, "%d workers ended by themselves",
	    ch.bad_exits);

	/* The daemon is back where it started. */
	for (deadline = h_now() + h_slow(5);; h_sleep(0.05)) {
		locks_status_free(st);
		st = NULL;
		ck_assert_int_eq(locks_status_get(driver, &st), LOCKS_OK);
		if ((locks_status_locks_held(st) == 0 &&
		    locks_status_waiters(st) == 0 &&
		    locks_status_connections(st) == 1) || h_now() > deadline)
			break;
	}
	fprintf(stderr, "chaos: daemon status at the end: %s\n",
	    locks_status_json(st));
	ck_assert_int_eq(locks_status_locks_held(st), 0);
	ck_assert_int_eq(locks_status_waiters(st), 0);
	ck_assert_int_eq(locks_status_connections(st), 1);
	locks_status_free(st);
	fds1 = proc_count_settles(d.pid, "fd", fds0, h_slow(5));
	tasks1 = proc_count_settles(d.pid, "task", tasks0, h_slow(5));
	fprintf(stderr, "chaos: daemon descriptors %d -> %d, threads %d -> "
	    "%d\n", fds0, fds1, tasks0, tasks1);
	ck_assert_int_eq(fds1, fds0);
	ck_assert_int_eq(tasks1, tasks0);
	locks_close(driver);
	ck_assert_msg(h_daemon_stop(&d) == 0, "%s", h_error());
	close(ch.log_fd);

	rc = h_system("python3 '%s' --min-grants 1000 --min-holder-kills 20 "
	    "'%s' >&2", CHAOS_CHECK_PATH, ch.log_path);
	ck_assert_msg(rc == 0, "chaos_check.py found faults in %s (exit %d)",
	    ch.log_path, rc);
}
END_TEST

/*
 * The checker itself must see faults: planted ones in small logs.
 */

/* A valid history of one name: exclusive, two shared, exclusive killed. */
#define LOG_SPAWNS							\
	"spawn t=1 w=1 pid=11\nspawn t=1 w=2 pid=12\nspawn t=1 w=3 pid=13\n"
#define LOG_FIRST							\
	"enter t=100 w=1 pid=11 name=n mode=exclusive token=10\n"	\
	"exit t=200 w=1 pid=11 name=n mode=exclusive token=10\n"
/* Shared holders granted together may log enter in either order. */
#define LOG_SHARED							\
	"enter t=290 w=3 pid=13 name=n mode=shared token=12\n"		\
	"enter t=300 w=2 pid=12 name=n mode=shared token=11\n"		\
	"exit t=400 w=2 pid=12 name=n mode=shared token=11\n"		\
	"exit t=405 w=3 pid=13 name=n mode=shared token=12\n"
#define LOG_KILLED							\
	"enter t=410 w=1 pid=11 name=n mode=exclusive token=13\n"	\
	"kill t=500 w=1 pid=11 why=holder\n"				\
	"reap t=510 w=1 pid=11 status=signal9\n"
#define LOG_NEXT							\
	"enter t=600 w=2 pid=12 name=n mode=exclusive token=14\n"	\
	"exit t=700 w=2 pid=12 name=n mode=exclusive token=14\n"

/* Run the checker on a log of this text; its exit status. */
static int
chaos_check_text(const char *text)
{
	char	 path[256];
	FILE	*fp;
	int	 rc;

	snprintf(path, sizeof path, "%s/planted.log", h_run_dir());
	ck_assert_ptr_nonnull(fp = fopen(path, "w"));
	fputs(text, fp);
	ck_assert_int_eq(fclose(fp), 0);
	rc = h_system("python3 '%s' '%s' >/dev/null", CHAOS_CHECK_PATH, path);
	unlink(path);
	return rc;
}

START_TEST(test_chaos_check_passes_a_valid_log_and_finds_planted_faults)
{
	static const struct {
		const char	*fault;
		const char	*log;
		int		 want;
	} cases[] = {
		{ "none", LOG_SPAWNS LOG_FIRST LOG_SHARED LOG_KILLED LOG_NEXT,
		    0 },
		{ "exclusive overlaps a killed holder before its kill",
		    LOG_SPAWNS LOG_FIRST LOG_SHARED LOG_KILLED
		    "enter t=450 w=2 pid=12 name=n mode=exclusive token=14\n"
		    "exit t=700 w=2 pid=12 name=n mode=exclusive token=14\n",
		    1 },
		{ "shared overlaps exclusive",
		    LOG_SPAWNS LOG_FIRST
		    "enter t=300 w=2 pid=12 name=n mode=shared token=11\n"
		    "exit t=420 w=2 pid=12 name=n mode=shared token=11\n"
		    LOG_KILLED LOG_NEXT, 1 },
		{ "two exclusive overlap",
		    LOG_SPAWNS LOG_FIRST
		    "enter t=150 w=2 pid=12 name=n mode=exclusive token=11\n"
		    "exit t=160 w=2 pid=12 name=n mode=exclusive token=11\n",
		    1 },
		{ "token went back",
		    LOG_SPAWNS LOG_FIRST LOG_SHARED LOG_KILLED
		    "enter t=600 w=2 pid=12 name=n mode=exclusive token=9\n"
		    "exit t=700 w=2 pid=12 name=n mode=exclusive token=9\n",
		    1 },
		{ "token granted twice",
		    LOG_SPAWNS LOG_FIRST LOG_SHARED LOG_KILLED
		    "enter t=600 w=2 pid=12 name=m mode=exclusive token=13\n"
		    "exit t=700 w=2 pid=12 name=m mode=exclusive token=13\n"
		    LOG_NEXT, 1 },
		{ "killed holder never handed on",
		    LOG_SPAWNS LOG_FIRST LOG_SHARED LOG_KILLED, 1 },
		{ "holder vanished without exit or kill",
		    LOG_SPAWNS LOG_FIRST LOG_SHARED
		    "enter t=410 w=1 pid=11 name=n mode=exclusive token=13\n"
		    LOG_NEXT, 1 },
		{ "a worker's call failed",
		    LOG_SPAWNS LOG_FIRST
		    "error t=300 w=2 pid=12 what=release code=not_held\n", 1 },
	};
	size_t	 i;
	int	 rc;

	for (i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		rc = chaos_check_text(cases[i].log);
		ck_assert_msg(rc == cases[i].want, "fault \"%s\": the checker "
		    "exited %d, not %d", cases[i].fault, rc, cases[i].want);
	}
}
END_TEST

/*
 * A stall: many unrelated flocks on the machine make every read of
 * /proc/locks slow, and one client pipelines list requests that each
 * want it.  Others must still be served, and SIGTERM acted on.
 */
#define STALL_FLOCKS	15000
#define STALL_LISTS	1500
#define STALL_LOCK_FILES 20000

/*
 * Fork children that together hold n flocks on files in dir (on the lock
 * dir's device, so the daemon must parse them all); each writes a byte to
 * the pipe once it holds its share, then waits to be killed.  Returns how
 * many children were forked into pids.
 */
static int
stall_flocks_start(const char *dir, int n, pid_t *pids, int maxpids)
{
	struct rlimit	 rl;
	char		 path[PATH_MAX + 16], c = 'x';
	int		 pipefd[2], per, nchildren = 0, first, i, fd;

	ck_assert_int_eq(getrlimit(RLIMIT_NOFILE, &rl), 0);
	per = rl.rlim_max > (rlim_t)n + 64 ? n : (int)rl.rlim_max - 64;
	ck_assert_int_gt(per, 0);
	ck_assert_int_eq(pipe(pipefd), 0);
	for (first = 0; first < n && nchildren < maxpids; first += per) {
		ck_assert_int_ne(pids[nchildren] = fork(), -1);
		if (pids[nchildren++] > 0)
			continue;
		rl.rlim_cur = rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
		for (i = first; i < n && i < first + per; i++) {
			snprintf(path, sizeof path, "%s/f%d", dir, i);
			if ((fd = open(path, O_RDONLY | O_CREAT, 0644)) == -1 ||
			    flock(fd, LOCK_EX | LOCK_NB) == -1)
				_exit(1);
		}
		if (write(pipefd[1], &c, 1) != 1)
			_exit(1);
		pause();
		_exit(0);
	}
	close(pipefd[1]);
	for (i = 0; i < nchildren; i++)
		ck_assert_int_eq(read(pipefd[0], &c, 1), 1);
	close(pipefd[0]);
	return nchildren;
}

START_TEST(test_pipelined_lists_under_many_flocks_do_not_stall_others)
{
	static char		 lists[STALL_LISTS * 32];
	struct h_daemon		 d;
	struct h_conn		*other;
	char			 dir[PATH_MAX], path[PATH_MAX + 32];
	pid_t			 pids[64];
	size_t			 len = 0;
	double			 t0;
	int			 i, n, fd;

	if (skip_under_wrapper(__func__))
		return;
	snprintf(dir, sizeof dir, "%s/stall-XXXXXX", h_run_dir());
	ck_assert_ptr_nonnull(mkdtemp(dir));
	n = stall_flocks_start(dir, STALL_FLOCKS, pids, 64);
	memset(&d, 0, sizeof d);
	ck_assert_msg(h_daemon_start(&d) == 0, "%s", h_error());
	/* A big lock dir too: every list with "all" reads it. */
	for (i = 0; i < STALL_LOCK_FILES; i++) {
		snprintf(path, sizeof path, "%s/stall-%d", d.lock_dir, i);
		ck_assert_int_ge(fd = open(path, O_RDONLY | O_CREAT, 0644), 0);
		close(fd);
	}
	other = h_connect_to(d.socket_path);
	for (i = 0; i < STALL_LISTS; i++)
		len += snprintf(lists + len, sizeof lists - len,
		    "{\"op\":\"list\",\"all\":true}\n");
	ck_assert_int_ne(fd = h_unix_connect(d.socket_path), -1);
	ck_assert_int_eq(write(fd, lists, len), (ssize_t)len);

	t0 = h_now();
	EXPECT_OK(h_request(other, "{\"op\":\"ping\"}"));
	ck_assert_msg(h_now() - t0 < 1, "a ping took %.3f s", h_now() - t0);
	t0 = h_now();
	EXPECT_OK(h_request(other, "{\"op\":\"acquire\",\"name\":\"stall\"}"));
	ck_assert_msg(h_now() - t0 < 1, "an acquire took %.3f s",
	    h_now() - t0);
	t0 = h_now();
	ck_assert_msg(h_daemon_signal_stop(&d, SIGTERM) == 0, "%s",
	    h_error());
	ck_assert_msg(h_now() - t0 < 5, "SIGTERM took %.3f s", h_now() - t0);
	close(fd);
	for (i = 0; i < n; i++) {
		kill(pids[i], SIGKILL);
		waitpid(pids[i], NULL, 0);
	}
}
END_TEST

static Suite *
robust_suite(void)
{
	Suite	*s = suite_create("robust");
	TCase	*tc;

	tc = h_daemon_tcase("isolation", 30);
	tcase_add_test(tc, test_another_connection_cannot_release_a_held_lock);
	tcase_add_test(tc, test_another_connection_cannot_cancel_a_wait);
	tcase_add_test(tc,
	    test_acquire_of_a_name_another_connection_awaits_is_its_own_wait);
	tcase_add_test(tc, test_others_are_seen_only_through_list);
	suite_add_tcase(s, tc);

	/* The rest start daemons of their own. */
	tc = h_tcase("backpressure", 60);
	tcase_add_test(tc,
	    test_flood_of_list_requests_never_read_keeps_memory_bounded);
	tcase_add_test(tc,
	    test_flood_of_pings_is_paused_and_every_request_is_answered);
	suite_add_tcase(s, tc);

	tc = h_tcase("stall", 60);
	tcase_add_test(tc,
	    test_pipelined_lists_under_many_flocks_do_not_stall_others);
	suite_add_tcase(s, tc);

	tc = h_tcase("descriptors", 60);
	tcase_add_test(tc,
	    test_out_of_descriptors_the_loop_idles_and_accepts_again);
	tcase_add_test(tc,
	    test_out_of_descriptors_with_a_failing_log_the_loop_idles);
	suite_add_tcase(s, tc);

	tc = h_tcase("stress", 150);
	tcase_add_test(tc,
	    test_five_thousand_concurrent_connections_take_and_release);
	suite_add_tcase(s, tc);

	tc = tcase_create("checker");
	tcase_set_timeout(tc, 30);
	tcase_add_test(tc,
	    test_chaos_check_passes_a_valid_log_and_finds_planted_faults);
	suite_add_tcase(s, tc);

	/* Over 30 s: ctest runs it alone (see tests/CMakeLists.txt). */
	tc = tcase_create("chaos");
	tcase_set_tags(tc, "long");
	tcase_set_timeout(tc, 150);
	tcase_add_test(tc,
	    test_chaos_keeps_exclusion_tokens_and_handoff_under_kills);
	suite_add_tcase(s, tc);
	return s;
}

/* The tests run forked: see harness.h. */
int
main(void)
{
	return h_run_suite(robust_suite());
}
