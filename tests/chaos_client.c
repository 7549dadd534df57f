/*
 * chaos_client: one worker of the chaos test (test_robust's "chaos"
 * TCase).  Through liblocks it takes and gives back a handful of names in
 * random modes with random timeouts, drops its connection in the middle
 * of a request, and otherwise behaves as a client should, until SIGTERM
 * tells it to finish or the driver kills it with SIGKILL.
 *
 * For as long as it believes it holds a name it logs that fact: an
 * "enter" record as soon as the grant has arrived, an "exit" record
 * before it sends the release (or closes the connection).  The checker
 * (chaos_check.py) reads only these records and the driver's.  A record
 * is one line written with one write(2) to a file opened O_APPEND, so
 * lines of concurrent workers never mix:
 *
 *	enter t=<ns> w=<worker> pid=<pid> name=<name> mode=<mode> token=<n>
 *	exit  t=<ns> w=<worker> pid=<pid> name=<name> mode=<mode> token=<n>
 *	error t=<ns> w=<worker> pid=<pid> what=<call> code=<error code>
 *
 * t is CLOCK_MONOTONIC in nanoseconds, the clock the driver uses too.
 *
 * usage: chaos_client socket log worker seed names
 */

#include <sys/socket.h>

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "locks.h"

#define MAX_NAMES	16

static volatile sig_atomic_t	 stopping;
static const char		*socket_path;
static int			 log_fd = -1;
static int			 worker;
static int			 nnames;
static locks_conn		*conn;
static unsigned int		 rng;

/* A random number in [0, n). */
static unsigned int
chance(unsigned int n)
{
	return (unsigned int)rand_r(&rng) % n;
}

static int64_t
now_ns(void)
{
	struct timespec	 ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* Sleep for up to max_ms milliseconds, a random amount. */
static void
pause_ms(unsigned int max_ms)
{
	struct timespec	 ts;
	long		 usec = max_ms == 0 ? 0 : (long)chance(max_ms * 1000);

	ts.tv_sec = usec / 1000000;
	ts.tv_nsec = (usec % 1000000) * 1000;
	while (nanosleep(&ts, &ts) == -1 && errno == EINTR)
		;
}

/* Append one record to the log with one write. */
static void __attribute__((format(printf, 2, 3)))
log_record(const char *kind, const char *fmt, ...)
{
	char	 line[512];
	va_list	 ap;
	int	 n;

	n = snprintf(line, sizeof line, "%s t=%" PRId64 " w=%d pid=%ld ",
	    kind, now_ns(), worker, (long)getpid());
	va_start(ap, fmt);
	n += vsnprintf(line + n, sizeof line - (size_t)n - 1, fmt, ap);
	va_end(ap);
	line[n++] = '\n';
	if (write(log_fd, line, (size_t)n) != n)
		_exit(5);
}

/* Log a call that failed and end the worker: chaos must not cause it. */
static void __attribute__((noreturn))
fail(const char *what, int error)
{
	log_record("error", "what=%s code=%s msg=\"%s\"", what,
	    locks_error_code(error), locks_last_message(conn));
	_exit(3);
}

static void
connect_again(void)
{
	char	 label[32];
	int	 error;

	locks_close(conn);
	conn = NULL;
	snprintf(label, sizeof label, "chaos-%d", worker);
	if ((error = locks_connect(socket_path, label, &conn)) != LOCKS_OK)
		fail("connect", error);
}

/* Write bytes straight to the connection's socket, behind liblocks. */
static void
send_raw(const char *text)
{
	size_t	 len = strlen(text);

	/* A short or failed write only makes the close more abrupt. */
	(void)send(locks_fd(conn), text, len, MSG_NOSIGNAL);
}

static void
name_of(int i, char *buf, size_t size)
{
	snprintf(buf, size, "chaos-%d", i);
}

/* What the worker holds right now, for its records. */
struct hold {
	char		 name[32];
	const char	*mode;
	int64_t		 token;
};

/* Take a name; 1 and the hold if granted, 0 on timeout. */
static int
take(int i, enum locks_mode mode, double timeout, struct hold *h)
{
	struct locks_acquire_opts	 opts = LOCKS_ACQUIRE_OPTS_INIT;
	int				 error;

	name_of(i, h->name, sizeof h->name);
	opts.mode = mode;
	opts.timeout = timeout;
	opts.owner = "chaos";
	error = locks_acquire(conn, h->name, &opts, &h->token);
	if (error == LOCKS_E_TIMEOUT)
		return 0;
	if (error != LOCKS_OK)
		fail("acquire", error);
	h->mode = mode == LOCKS_SHARED ? "shared" : "exclusive";
	log_record("enter", "name=%s mode=%s token=%" PRId64, h->name,
	    h->mode, h->token);
	return 1;
}

/* Stop believing we hold it: the record comes before the release. */
static void
leave(const struct hold *h)
{
	log_record("exit", "name=%s mode=%s token=%" PRId64, h->name,
	    h->mode, h->token);
}

static void
give_back(const struct hold *h)
{
	int	 error;

	leave(h);
	if ((error = locks_release(conn, h->name)) != LOCKS_OK)
		fail("release", error);
}

/* A random acquire timeout: try once, wait forever, or a while. */
static double
random_timeout(void)
{
	unsigned int	 r = chance(4);

	if (r == 0)
		return 0;
	if (r == 1)
		return -1;
	return 0.01 + chance(1000) / 1000.0;
}

/*
 * Hold a name for a while, maybe try a second one meanwhile, then let it
 * go: by release (mostly), or by closing the connection, at times in the
 * middle of a request.
 */
static void
hold_cycle(void)
{
	struct hold	 h, h2;
	enum locks_mode	 mode;
	int		 i = (int)chance((unsigned int)nnames), j;

	mode = chance(10) < 4 ? LOCKS_SHARED : LOCKS_EXCLUSIVE;
	if (!take(i, mode, random_timeout(), &h))
		return;
	pause_ms(15);
	if (chance(10) == 0 && (j = (int)chance((unsigned int)nnames)) != i) {
		/* Only try for a second name: never wait while holding. */
		mode = chance(2) ? LOCKS_SHARED : LOCKS_EXCLUSIVE;
		if (take(j, mode, 0, &h2)) {
			pause_ms(5);
			give_back(&h2);
		}
	}
	switch (chance(100) / 25) {
	case 0:
		/* Half a request, a moment with it pending, then close. */
		send_raw("{\"op\":\"acquire\",\"name\":\"chaos-0\",\"mo");
		pause_ms(10);
		leave(&h);
		connect_again();
		break;
	case 1:
		if (chance(2)) {
			/* Just go away, holding it. */
			leave(&h);
			connect_again();
			break;
		}
		/* FALLTHROUGH */
	default:
		give_back(&h);
		break;
	}
}

/*
 * Queue a raw acquire behind liblocks' back, then half a line, then
 * close: the daemon may grant it or not before it sees the close.  The
 * worker never believes it holds this one, so nothing is logged.
 */
static void
abandon_wait(void)
{
	char	 line[128];

	snprintf(line, sizeof line, "{\"op\":\"acquire\",\"id\":\"x\","
	    "\"name\":\"chaos-%u\",\"mode\":\"%s\"}\n{\"op\":\"rel",
	    chance((unsigned int)nnames), chance(2) ? "shared" : "exclusive");
	send_raw(line);
	pause_ms(20);
	connect_again();
}

static void
look_around(void)
{
	locks_list	*list;
	int		 error;

	if (chance(2)) {
		if ((error = locks_ping(conn)) != LOCKS_OK)
			fail("ping", error);
		return;
	}
	if ((error = locks_list_get(conn, NULL, &list)) != LOCKS_OK)
		fail("list", error);
	locks_list_free(list);
}

static void
on_term(int sig)
{
	(void)sig;
	stopping = 1;
}

int
main(int argc, char **argv)
{
	struct sigaction	 sa;
	unsigned int		 r;

	if (argc != 6) {
		fprintf(stderr, "usage: chaos_client socket log worker seed "
		    "names\n");
		return 2;
	}
	socket_path = argv[1];
	worker = atoi(argv[3]);
	rng = (unsigned int)strtoul(argv[4], NULL, 10);
	nnames = atoi(argv[5]);
	if (nnames < 1 || nnames > MAX_NAMES)
		return 2;
	if ((log_fd = open(argv[2], O_WRONLY | O_APPEND | O_CLOEXEC)) == -1) {
		perror(argv[2]);
		return 2;
	}
	memset(&sa, 0, sizeof sa);
	sa.sa_handler = on_term;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGTERM, &sa, NULL);

	connect_again();
	while (!stopping) {
		r = chance(100);
		if (r < 5) {
			/* Half a request with nothing held, then close. */
			send_raw("{\"op\":\"ping\",\"i");
			connect_again();
		} else if (r < 9)
			abandon_wait();
		else if (r < 14)
			look_around();
		else
			hold_cycle();
		pause_ms(5);
	}
	locks_close(conn);
	return 0;
}
