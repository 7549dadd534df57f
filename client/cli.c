/*
 * locks(1): run a command under a lock held by locksd, and show the
 * daemon's locks and counters.  Built on liblocks alone.  The options of
 * "run" follow util-linux flock(1), and invoked as "flock" it takes
 * flock(1)'s command line itself.
 */

#include <sys/file.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/types.h>
#include <sys/wait.h>

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <poll.h>
#include <pwd.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sysexits.h>
#include <time.h>
#include <unistd.h>

#include "locks.h"

#ifndef LOCKS_VERSION
#define LOCKS_VERSION "0.1.0"
#endif

#define EXIT_CONFLICT	1	/* the lock was taken: timed out or -n */
#define EXIT_HELD	1	/* check: the lock is held */
#define EXIT_USAGE	EX_USAGE /* bad command line, 64 as in flock(1) */
#define EXIT_NOTFOUND	127	/* the command was not found */
#define EXIT_NOEXEC	126	/* the command could not be executed */

/* A limit from locks.h as text: TEXT(LOCKS_MAX_NAME) is "200". */
#define TEXT_(x)	#x
#define TEXT(x)		TEXT_(x)

#define NAME_RULES	"a name is 1 to " TEXT(LOCKS_MAX_NAME) " bytes of " \
			"[A-Za-z0-9._:@+-] and does not start with '.'"

/* Long options with no short letter. */
enum {
	OPT_SOCKET = 256,
	OPT_NOTIFY_AFTER,
	OPT_ON_LOST,
	OPT_JSON,
	OPT_VERBOSE,
	OPT_OWNER,
	OPT_FALLBACK,
	OPT_CLUSTER,
	OPT_ON_CONTENDED,
	OPT_OPENMETRICS,
	OPT_DETECT_DEADLOCK
};

/* --on-lost: not given, term or ignore. */
enum {
	ON_LOST_UNSET = -1,
	ON_LOST_IGNORE,
	ON_LOST_TERM
};

/* --on-contended: not given, term or ignore. */
enum {
	ON_CONTENDED_UNSET = -1,
	ON_CONTENDED_IGNORE,
	ON_CONTENDED_TERM
};

/*
 * What run's on_contended callback needs: the command, once it runs, and
 * the socket whose other end it has as $LOCKS_CONTENDED_FD.
 */
struct contended_run {
	int		 mode;		/* ON_CONTENDED_* */
	int		 fd;		/* ours, or -1 */
	int		 child_fd;	/* the command's, or -1 */
	pid_t		 pid;		/* the command, once forked */
	int		 early;		/* told before the command ran */
	int		 termed;	/* SIGTERM sent */
};

/* The options run and hold share, and what the blocking notice needs. */
struct lock_args {
	struct locks_acquire_opts opts;
	int		 nonblock;
	int		 conflict;	/* exit status on conflict (-E) */
	int		 quiet;		/* -q: say nothing about waiting */
	int		 verbose;	/* --verbose: say how long, or why */
	int		 no_fork;	/* -F */
	int		 close;		/* -o */
	int		 on_lost;	/* ON_LOST_* */
	int		 unlock;	/* -u */
	int		 fallback;	/* --fallback: no broker, plain flock(2) */
	int		 as_flock;	/* invoked as flock: its exit statuses */
	struct contended_run contended;	/* --on-contended */
};

#define LOCK_ARGS_INIT { LOCKS_ACQUIRE_OPTS_INIT, 0, EXIT_CONFLICT, 0, 0, 0, \
	0, ON_LOST_UNSET, 0, 0, 0, { ON_CONTENDED_UNSET, -1, -1, 0, 0, 0 } }

/*
 * Set once in main when invoked as flock (a symlink flock -> locks); it
 * picks the usage, help and version shown, nothing else.
 */
static int invoked_as_flock;

static const char usage_text[] =
    "usage: locks [--socket PATH] run [-s|-x] [-n] [-w SECS] [-E CODE] [-F|-o]\n"
    "                 [--notify-after SECS] [--owner TEXT] [-q|--verbose]\n"
    "                 [--on-lost=term|ignore] [--on-contended=term|ignore]\n"
    "                 [--detect-deadlock] [--fallback] [--cluster]\n"
    "                 NAME|PATH [--] COMMAND [ARGS...] | NAME|PATH -c 'COMMAND'\n"
    "       locks [--socket PATH] run [-s|-x] [-n] [-w SECS] [-E CODE] [-u]\n"
    "                 [--fallback] [-q|--verbose] N\n"
    "       locks [--socket PATH] hold [-s|-x] [-n] [-w SECS] [-E CODE]\n"
    "                 [--notify-after SECS] [--owner TEXT] [-q|--verbose]\n"
    "                 [--detect-deadlock] NAME|PATH\n"
    "       locks [--socket PATH] check [-q] NAME|PATH\n"
    "       locks [--socket PATH] list [-a] [--cluster] [-o COLUMNS] [-n]\n"
    "                 [-r] [--json] [NAME|PATH]\n"
    "       locks [--socket PATH] status [--json]\n"
    "       locks [--socket PATH] metrics [--openmetrics|--json]\n"
    "       locks --help | --version\n";

static const char help_text[] =
    "\n"
    "Run a command while holding a lock from locksd, or show the daemon's\n"
    "locks.  Invoked as flock (a symlink flock -> locks), take flock(1)'s\n"
    "command line, with no \"run\", and fall back to a plain flock(2) when\n"
    "no broker answers or it refuses.\n"
    "\n"
    "Commands:\n"
    "  run NAME|PATH [--] COMMAND [ARGS...]\n"
    "  run NAME|PATH -c 'COMMAND'\n"
    "                      take lock NAME (or the file PATH, anything with\n"
    "                      a '/'), run COMMAND (with -c, through $SHELL -c,\n"
    "                      else /bin/sh -c) with LOCKS_NAME and LOCKS_TOKEN\n"
    "                      (the fencing token) in its environment; COMMAND\n"
    "                      inherits the lock, which ends when COMMAND and\n"
    "                      whatever it left running that kept it have exited\n"
    "  run N               lock the open descriptor N (all digits, no\n"
    "                      COMMAND) in the broker's FIFO order and leave the\n"
    "                      lock on it, as flock N does: it lasts while the\n"
    "                      descriptor stays open, or until run -u N\n"
    "  hold NAME|PATH      take the lock, print its token on one line and\n"
    "                      hold it until stdin closes or SIGTERM comes;\n"
    "                      either one while waiting gives up (stdin's end:\n"
    "                      the conflict status; SIGTERM: 143)\n"
    "  check NAME|PATH     exit 0 if it is free, 1 if it is held (and\n"
    "                      print the holders, unless -q)\n"
    "  list [NAME|PATH]    show holders and waiters; of that lock only, with\n"
    "                      its holders outside the broker, or \"NAME: free\"\n"
    "  status              show the daemon's version and counters\n"
    "  metrics             print the daemon's metrics for a scraper, in\n"
    "                      Prometheus' text format (promtool check metrics\n"
    "                      takes it), ending in \"# EOF\"\n"
    "\n"
    "Options:\n"
    "  --socket PATH       the daemon's socket (default: $LOCKS_SOCKET,\n"
    "                      else /run/locksd/locksd.sock (for others than\n"
    "                      root, when a broker answers there), else\n"
    "                      $XDG_RUNTIME_DIR/locksd/locksd.sock, else\n"
    "                      /tmp/locksd-$UID/locksd.sock)\n"
    "  -h, --help          show this help\n"
    "  -V, --version       show the version\n"
    "\n"
    "Options of run and hold (the letters of flock(1)):\n"
    "  -s, --shared        take a shared lock\n"
    "  -x, -e, --exclusive take an exclusive lock (the default)\n"
    "  -n, --nb, --nonblock\n"
    "                      fail at once if the lock is taken\n"
    "  -w, --wait, --timeout SECS\n"
    "                      give up after SECS seconds (0 is -n; default:\n"
    "                      wait forever)\n"
    "  -E, --conflict-exit-code CODE\n"
    "                      exit status when the lock is taken (default 1)\n"
    "  --notify-after SECS say who holds the lock once blocked this long\n"
    "                      (default 0)\n"
    "  --owner TEXT        text shown in listings (default: the command\n"
    "                      line, cut to " TEXT(LOCKS_MAX_OWNER) " bytes)\n"
    "  --cluster           a cluster lock: NAME in the etcd cluster of a\n"
    "                      locksd run with --etcd, one holder across every\n"
    "                      machine on it (names only; no --fallback, -u)\n"
    "  -q, --quiet         say nothing about waiting or giving up\n"
    "  --verbose           say how long getting the lock took, or why it\n"
    "                      failed, on stderr\n"
    "Without --verbose, who holds the lock is said only when stderr is a\n"
    "terminal, and a conflict prints nothing, as with flock(1).\n"
    "\n"
    "Options of run only:\n"
    "  -c, --command 'COMMAND'\n"
    "                      after NAME: run COMMAND through the shell\n"
    "  -F, --no-fork       exec COMMAND in place of locks; it holds the\n"
    "                      lock (the connection) itself until it exits;\n"
    "                      --on-lost cannot apply\n"
    "  -o, --close         COMMAND does not inherit the lock: locks holds\n"
    "                      it until COMMAND exits, and if locks is killed\n"
    "                      the lock ends at once\n"
    "  -u, --unlock        with N: flock(N, LOCK_UN); the broker notices\n"
    "  --fallback          if no broker answers (or it refuses the user,\n"
    "                      the request or the file), take a plain flock(2)\n"
    "                      on the same file or descriptor, as flock(1)\n"
    "                      would; for a NAME that is\n"
    "                      locks/NAME beside the socket; said under --verbose\n"
    "  --on-lost=term|ignore\n"
    "                      if locksd dies while COMMAND runs (or, with\n"
    "                      --cluster, loses its etcd lease), the lock is\n"
    "                      gone: term (the default) warns, sends SIGTERM to\n"
    "                      COMMAND and exits 75; ignore only warns\n"
    "  --on-contended=term|ignore\n"
    "                      ask to be told when someone queues behind the\n"
    "                      lock: term sends SIGTERM to COMMAND the first\n"
    "                      time, for jobs that should yield; either way\n"
    "                      COMMAND reads one line \"contended WAITERS PID\"\n"
    "                      per notice on descriptor $LOCKS_CONTENDED_FD\n"
    "  --detect-deadlock   run, hold: fail at once, with the conflict status,\n"
    "                      if the wait would never end: the lock is held by\n"
    "                      an ancestor of this process (a nested locks run),\n"
    "                      or the wait closes a cycle of connections waiting\n"
    "                      for each other; the message names who\n"
    "SIGTERM and SIGHUP to run are passed on to COMMAND; SIGINT and SIGQUIT\n"
    "end run itself, as they end flock(1), and COMMAND keeps the lock.\n"
    "\n"
    "Options of check, list and status:\n"
    "  -q, --quiet         check: print nothing, only the exit status\n"
    "  --json              list: print the locks as one JSON array (the\n"
    "                      protocol's lock objects); status: the daemon's\n"
    "                      reply as one line of JSON\n"
    "  --cluster           list: the cluster's locks, on every machine,\n"
    "                      with a NODE column\n"
    "  -a, --all           list: also files of the lock directory held only\n"
    "                      by programs outside the broker\n"
    "  -o, --output COLUMNS\n"
    "                      list: the columns to show, comma-separated, in\n"
    "                      any case; +COLUMNS adds to the default ones\n"
    "  -n, --noheadings    list: no header line (nor \"NAME: free\")\n"
    "  -r, --raw           list: one space between cells, no alignment;\n"
    "                      blanks, \\, control and non-ASCII bytes as \\xNN,\n"
    "                      as lslocks -r\n"
    "\n"
    "Options of metrics:\n"
    "  --openmetrics       the OpenMetrics 1.0 text format instead\n"
    "  --json              the metrics object of the daemon's status reply,\n"
    "                      as one line of JSON\n"
    "\n"
    "Columns of list (the first nine are the default):\n"
    "  NAME                the lock's name\n"
    "  STATE               held, waiting, or external (held outside the\n"
    "                      broker)\n"
    "  MODE                exclusive or shared\n"
    "  PID                 the holder's or waiter's process\n"
    "  USER                its user's name (the number if it has none)\n"
    "  CLIENT              its client label\n"
    "  SINCE               when it got the lock, or began to wait (local\n"
    "                      time, YYYY-MM-DD HH:MM:SS)\n"
    "  HELD                how long since then: how long it has held the\n"
    "                      lock, or waited for it (as 1m05s)\n"
    "  OWNER               the owner text; outside the broker, the command\n"
    "  UID                 its user's number\n"
    "  TOKEN               a holder's fencing token\n"
    "  NODE                a cluster holder's machine (locksd --node); list\n"
    "                      --cluster adds it to the default\n"
    "\n"
    "A name is 1 to " TEXT(LOCKS_MAX_NAME) " bytes of [A-Za-z0-9._:@+-] not "
    "starting with '.'.\n"
    "\n"
    "Exit status:\n"
    "  0      success (list, status, metrics, hold); check: the lock is\n"
    "         free\n"
    "  N      run: the command's status, or 128+SIG if a signal killed it\n"
    "  1      run, hold: the lock is taken (-n) or the wait timed out (see\n"
    "         -E); check: the lock is held (and only then); status: a\n"
    "         daemon timeout\n"
    "  64     usage error, including an invalid lock name\n"
    "  69     cannot reach the daemon (a system socket that is there but\n"
    "         does not answer included), or the connection was lost, or\n"
    "         the default socket is not the user's own (see locks(1))\n"
    "  70     the daemon refused the request, or its reply made no sense,\n"
    "         or it speaks another protocol version\n"
    "  71     cannot fork\n"
    "  75     the daemon hit a resource limit, or (check, list) timed out:\n"
    "         try again later; or run, hold: locksd went away while the\n"
    "         lock was held (--on-lost=term)\n"
    "  77     the daemon does not allow this user (permission_denied)\n"
    "  65     run N: N is no open descriptor (as flock(1))\n"
    "  66     run, hold: the lock file cannot be opened (73 on a read-only\n"
    "         or full file system; as flock(1)); check, list: a PATH\n"
    "         that exists cannot be opened\n"
    "  126    run: the command cannot be executed\n"
    "  127    run: the command was not found\n"
    "Invoked as flock, a command that cannot run exits 69, as flock(1)'s\n"
    "does, and no broker is no error: the plain flock(2) is used.\n";

static const char flock_usage_text[] =
    "usage: flock [options] FILE|DIR COMMAND [ARGS...]\n"
    "       flock [options] FILE|DIR -c COMMAND\n"
    "       flock [options] N\n";

static const char flock_help_text[] =
    "\n"
    "flock(1)'s command line, served by locksd: the lock is granted in FIFO\n"
    "order, shown by \"locks list\", and carries a fencing token; with no\n"
    "broker, a plain flock(2) as flock(1) takes.  This is locks(1).\n"
    "\n"
    "Options:\n"
    "  -s, --shared        get a shared lock\n"
    "  -x, -e, --exclusive get an exclusive lock (the default)\n"
    "  -u, --unlock        remove a lock\n"
    "  -n, --nb, --nonblock\n"
    "                      fail rather than wait\n"
    "  -w, --wait, --timeout SECS\n"
    "                      wait for a limited amount of time\n"
    "  -E, --conflict-exit-code N\n"
    "                      exit status after a conflict or timeout\n"
    "  -o, --close         close the lock's descriptor before COMMAND\n"
    "  -c, --command COMMAND\n"
    "                      run a single command string through the shell\n"
    "  -F, --no-fork       execute COMMAND without forking\n"
    "  --verbose           say how long getting the lock took, or why not,\n"
    "                      and when there is no broker\n"
    "  --detect-deadlock   fail at once if an ancestor holds the lock\n"
    "  -h, --help          display this help\n"
    "  -V, --version       display the version\n"
    "The options of \"locks run\" (--owner, --socket, --notify-after,\n"
    "--on-lost, -q) work too; see locks(1).\n";

/* The usage lines of the name locks was invoked by. */
static const char *
usage_lines(void)
{
	return invoked_as_flock ? flock_usage_text : usage_text;
}

/* Say what went wrong with the command line and exit. */
static void __attribute__((noreturn, format(printf, 1, 2)))
usage_error(const char *fmt, ...)
{
	va_list	 ap;

	if (fmt != NULL) {
		fputs("locks: ", stderr);
		va_start(ap, fmt);
		vfprintf(stderr, fmt, ap);
		va_end(ap);
		fputc('\n', stderr);
	}
	fputs(usage_lines(), stderr);
	exit(EXIT_USAGE);
}

/* Print the help and exit. */
static void __attribute__((noreturn))
help(void)
{
	fputs(usage_lines(), stdout);
	fputs(invoked_as_flock ? flock_help_text : help_text, stdout);
	exit(0);
}

/* Print the version and exit. */
static void __attribute__((noreturn))
print_version(void)
{
	printf(invoked_as_flock ? "flock (locks %s)\n" : "locks %s\n",
	    LOCKS_VERSION);
	exit(0);
}

/* Print a message for a fatal local failure and exit with code. */
static void __attribute__((noreturn, format(printf, 2, 3)))
die(int code, const char *fmt, ...)
{
	va_list	 ap;

	fputs("locks: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	exit(code);
}

/* Allocate or exit. */
static void *
xmalloc(size_t size)
{
	void	*p;

	if ((p = malloc(size)) == NULL)
		die(EX_OSERR, "out of memory");
	return p;
}

/*
 * Copy text for a terminal: control characters (C0, DEL and C1) become
 * \xNN, and when quoted is set, " and \ are escaped too.
 */
static char *
clean(const char *text, int quoted)
{
	const unsigned char	*s = (const unsigned char *)text;
	char			*out, *p;

	p = out = xmalloc(strlen(text) * 4 + 1);
	for (; *s != '\0'; s++) {
		if (*s < 0x20 || *s == 0x7f)
			p += sprintf(p, "\\x%02x", *s);
		else if (*s == 0xc2 && s[1] >= 0x80 && s[1] <= 0x9f) {
			p += sprintf(p, "\\x%02x", s[1]);
			s++;
		} else if (quoted && (*s == '"' || *s == '\\')) {
			*p++ = '\\';
			*p++ = (char)*s;
		} else
			*p++ = (char)*s;
	}
	*p = '\0';
	return out;
}

/* Format a unix time as HH:MM:SS today, or with the date otherwise. */
static void
format_since(double since, char *buf, size_t size)
{
	struct tm	 tm, now_tm;
	time_t		 t, now;

	if (since <= 0 || !isfinite(since)) {
		snprintf(buf, size, "-");
		return;
	}
	t = (time_t)since;
	now = time(NULL);
	if (localtime_r(&t, &tm) == NULL ||
	    localtime_r(&now, &now_tm) == NULL) {
		snprintf(buf, size, "-");
		return;
	}
	if (tm.tm_year == now_tm.tm_year && tm.tm_yday == now_tm.tm_yday)
		strftime(buf, size, "%H:%M:%S", &tm);
	else
		strftime(buf, size, "%Y-%m-%d %H:%M:%S", &tm);
}

/* Parse a number of seconds from 0 to LOCKS_MAX_SECONDS for option opt. */
static double
parse_seconds(const char *text, const char *opt)
{
	char	*end;
	double	 value;

	errno = 0;
	value = strtod(text, &end);
	if (errno != 0 || end == text || *end != '\0' || !isfinite(value) ||
	    value < 0 || value > LOCKS_MAX_SECONDS)
		usage_error("%s wants a number of seconds from 0 to "
		    TEXT(LOCKS_MAX_SECONDS) ", not \"%s\"", opt, text);
	return value;
}

/* Parse an exit code from 0 to 255 for -E. */
static int
parse_exit_code(const char *text)
{
	char	*end;
	long	 value;

	errno = 0;
	value = strtol(text, &end, 10);
	if (errno != 0 || end == text || *end != '\0' || value < 0 ||
	    value > 255)
		usage_error("-E wants an exit code from 0 to 255, not \"%s\"",
		    text);
	return (int)value;
}

/* Resolve the socket path: the one given, or the library's default. */
static const char *
socket_path(const char *given, char *buf, size_t size)
{
	int	 n;

	if (given != NULL)
		return given;
	n = locks_default_socket(buf, size);
	if (n < 0 || (size_t)n >= size)
		die(EX_UNAVAILABLE, "default socket path too long");
	return buf;
}

/*
 * Report a library error and return the exit status it deserves.  An
 * unreachable daemon is one line naming the socket.
 */
static int
report(int error, locks_conn *conn, const char *path)
{
	const char	*msg, *reason;
	size_t		 plen;

	msg = locks_last_message(conn);
	if (*msg == '\0')
		msg = locks_strerror(error);
	switch (error) {
	case LOCKS_E_CONNECT:
	case LOCKS_E_LOST:
		/* The library says "cannot connect to PATH: REASON". */
		reason = msg;
		plen = strlen(path);
		if (strncmp(msg, "cannot connect to ", 18) == 0) {
			reason = msg + 18;
			/* Another socket, such as the system one: as it is. */
			if (strncmp(reason, path, plen) != 0 ||
			    strncmp(reason + plen, ": ", 2) != 0) {
				fprintf(stderr, "locks: %s\n", msg);
				return EX_UNAVAILABLE;
			}
			reason += plen + 2;
		}
		fprintf(stderr, "locks: cannot connect to locksd at %s: %s\n",
		    path, reason);
		return EX_UNAVAILABLE;
	case LOCKS_E_UNTRUSTED:
		/* The library names the directory or socket and why. */
		fprintf(stderr, "locks: %s\n", msg);
		return EX_UNAVAILABLE;
	}
	fprintf(stderr, "locks: %s: %s\n", locks_error_code(error), msg);
	switch (error) {
	case LOCKS_E_TIMEOUT:
		return EXIT_CONFLICT;
	case LOCKS_E_PERMISSION_DENIED:
		return EX_NOPERM;
	case LOCKS_E_LIMIT:
		return EX_TEMPFAIL;
	case LOCKS_E_OPEN:
		return EX_NOINPUT;	/* flock(1)'s status for a file it cannot open */
	}
	return EX_SOFTWARE;
}

/* Connect with the given client label, or exit saying why not. */
static locks_conn *
connect_or_exit(const char *given, const char *label)
{
	char		 buf[PATH_MAX];
	const char	*path;
	locks_conn	*conn;
	int		 error;

	/* Given NULL, the library checks a per-user default before use. */
	path = socket_path(given, buf, sizeof buf);
	if ((error = locks_connect(given, label, &conn)) != LOCKS_OK)
		exit(report(error, NULL, path));
	return conn;
}

/*
 * Join the command line with spaces, cut to LOCKS_MAX_OWNER bytes on a
 * UTF-8 boundary.
 */
static char *
default_owner(char **argv)
{
	char	*owner;
	size_t	 len = 0, size = 1;
	int	 i;

	for (i = 0; argv[i] != NULL; i++)
		size += strlen(argv[i]) + 1;
	owner = xmalloc(size);
	for (i = 0; argv[i] != NULL; i++) {
		if (i > 0)
			owner[len++] = ' ';
		memcpy(owner + len, argv[i], strlen(argv[i]));
		len += strlen(argv[i]);
	}
	owner[len] = '\0';
	if (len > LOCKS_MAX_OWNER) {
		/* Never end inside a character: back up to its lead byte. */
		len = LOCKS_MAX_OWNER;
		while (len > 0 && ((unsigned char)owner[len] & 0xc0) == 0x80)
			len--;
		owner[len] = '\0';
	}
	return owner;
}

/* The parent of pid, from /proc/PID/stat, or -1 if it cannot be read. */
static pid_t
parent_of(pid_t pid)
{
	char	 path[64], buf[1024], *p;
	FILE	*f;
	size_t	 n;
	int	 ppid;

	snprintf(path, sizeof path, "/proc/%ld/stat", (long)pid);
	if ((f = fopen(path, "r")) == NULL)
		return -1;
	n = fread(buf, 1, sizeof buf - 1, f);
	fclose(f);
	buf[n] = '\0';
	/* The command name may hold spaces and ')': skip to the last ')'. */
	if ((p = strrchr(buf, ')')) == NULL ||
	    sscanf(p + 1, " %*c %d", &ppid) != 1)
		return -1;
	return ppid;
}

/* Whether pid is this process's parent, grandparent, and so on. */
static int
is_ancestor(pid_t pid)
{
	pid_t	 p;
	int	 depth;

	if (pid <= 0)
		return 0;
	/* Bounded, in case /proc shows a loop while pids are reused. */
	for (p = getppid(), depth = 0; p > 0 && depth < 4096; depth++) {
		if (p == pid)
			return 1;
		if (p == 1)
			break;
		p = parent_of(p);
	}
	return 0;
}

/* Print one "held by" line for a holder of a lock we wait for. */
static void
print_holder(const char *name, const locks_holder *h, int position)
{
	char	 since[64];
	char	*client, *owner, *command;

	if (locks_holder_external(h)) {
		command = clean(locks_holder_command(h), 1);
		fprintf(stderr, "locks: %s is held by pid %ld (outside the "
		    "broker%s%s%s) %s; waiting at position %d\n", name,
		    (long)locks_holder_pid(h),
		    *command != '\0' ? ", command \"" : "", command,
		    *command != '\0' ? "\"" : "",
		    locks_mode_name(locks_holder_mode(h)), position);
		free(command);
		return;
	}
	client = clean(locks_holder_client(h), 1);
	owner = clean(locks_holder_owner(h), 1);
	format_since(locks_holder_since(h), since, sizeof since);
	fprintf(stderr, "locks: %s is held by pid %ld (client \"%s\", owner "
	    "\"%s\") %s since %s; waiting at position %d\n", name,
	    (long)locks_holder_pid(h), client, owner,
	    locks_mode_name(locks_holder_mode(h)), since, position);
	free(client);
	free(owner);
}

/*
 * --detect-deadlock: the lock we wait for is held by our own ancestor,
 * which waits for us in turn.  Say so and exit with the conflict status;
 * the connection closes, which cancels the wait.
 */
static void
deadlock_ancestor(const struct lock_args *la, const char *name, pid_t pid)
{
	fprintf(stderr, "locks: deadlock: %s is held by pid %ld, an ancestor "
	    "of this process (the lock is nested in itself): it waits for "
	    "this process, which would wait for it forever\n", name,
	    (long)pid);
	exit(la->conflict);
}

/*
 * The on_blocking callback of run and hold: say who holds the lock when
 * asked to or when a person watches stderr, as flock(1) stays silent for
 * cron.  A holder that is our own ancestor waits for us in turn, so that
 * is said whenever we are not told to be quiet.
 */
static void
blocking_notice(const locks_lock *lock, int position, void *arg)
{
	const struct lock_args	*la = arg;
	const locks_holder	*h;
	size_t			 i, n;
	int			 show;

	n = locks_lock_nholders(lock);
	for (i = 0; i < n && la->opts.detect_deadlock; i++) {
		h = locks_lock_holder(lock, i);
		if (!locks_holder_external(h) &&
		    is_ancestor(locks_holder_pid(h)))
			deadlock_ancestor(la, locks_lock_name(lock),
			    locks_holder_pid(h));
	}
	if (la->quiet)
		return;
	show = la->verbose || isatty(STDERR_FILENO);
	n = locks_lock_nholders(lock);
	if (n == 0 && show)
		fprintf(stderr, "locks: %s is held outside the broker; "
		    "waiting at position %d\n", locks_lock_name(lock),
		    position);
	for (i = 0; i < n; i++) {
		h = locks_lock_holder(lock, i);
		if (show)
			print_holder(locks_lock_name(lock), h, position);
		if (is_ancestor(locks_holder_pid(h)))
			fprintf(stderr, "locks: %s is held by pid %ld, an "
			    "ancestor of this process (the lock is nested in "
			    "itself): it waits for us, so this wait ends only "
			    "by a timeout\n", locks_lock_name(lock),
			    (long)locks_holder_pid(h));
	}
}

/* --on-contended=term: stop the command once, as someone waits. */
static void
contended_term(struct contended_run *cr)
{
	if (cr->mode != ON_CONTENDED_TERM || cr->termed)
		return;
	if (cr->pid <= 0) {
		cr->early = 1;
		return;
	}
	cr->termed = 1;
	kill(cr->pid, SIGTERM);
}

/*
 * The on_contended callback of run: a line for the command on its
 * $LOCKS_CONTENDED_FD (dropped if it reads none and the socket is full,
 * or it closed its end), and with term a SIGTERM.
 */
static void
contended_notice(const char *name, int waiters, const locks_holder *first,
    void *arg)
{
	struct lock_args	*la = arg;
	struct contended_run	*cr = &la->contended;
	char			 line[64];
	int			 len;

	(void)name;
	len = snprintf(line, sizeof line, "contended %d %ld\n", waiters,
	    (long)locks_holder_pid(first));
	if (cr->fd >= 0 && len > 0 && (size_t)len < sizeof line)
		(void)send(cr->fd, line, (size_t)len,
		    MSG_NOSIGNAL | MSG_DONTWAIT);
	contended_term(cr);
}

/*
 * The socket run writes contended lines on: ours close-on-exec and
 * non-blocking, the command's end inherited as $LOCKS_CONTENDED_FD.
 */
static void
contended_open(struct contended_run *cr)
{
	int	 sv[2];

	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) == -1)
		die(EX_OSERR, "socketpair: %s", strerror(errno));
	if (fcntl(sv[0], F_SETFL, O_NONBLOCK) == -1 ||
	    shutdown(sv[0], SHUT_RD) == -1)
		die(EX_OSERR, "socketpair: %s", strerror(errno));
	cr->fd = sv[0];
	cr->child_fd = sv[1];
}

/* Close both ends of the contended socket that are still open. */
static void
contended_close(struct contended_run *cr)
{
	if (cr->fd >= 0)
		close(cr->fd);
	if (cr->child_fd >= 0)
		close(cr->child_fd);
	cr->fd = cr->child_fd = -1;
}

/*
 * What the command finds: its argv, LOCKS_NAME and LOCKS_TOKEN, the
 * descriptors it inherits and the one it must not (-o without a broker).
 */
struct command_env {
	char		**argv;
	const char	 *name;		/* LOCKS_NAME: the target as given */
	int64_t		  token;	/* LOCKS_TOKEN; 0: no broker, unset */
	int		  inherit[3];	/* made inheritable in the child, or -1 */
	int		  close_fd;	/* closed in the child, or -1 */
	int		  as_flock;	/* cannot run: 69, as flock(1) exits */
	int		  contended_fd;	/* LOCKS_CONTENDED_FD, or -1: unset */
};

/*
 * In the child (or, with -F, in place of locks): give the command its
 * descriptors and environment and exec it, with the signal mask given.
 */
static void __attribute__((noreturn))
exec_command(const struct command_env *env, const sigset_t *mask)
{
	char	 buf[32];
	int	 i, flags, error = 0;

	sigprocmask(SIG_SETMASK, mask, NULL);
	/* liblocks opens its socket close-on-exec: clear that here only. */
	for (i = 0; i < 3; i++) {
		if (env->inherit[i] >= 0 &&
		    ((flags = fcntl(env->inherit[i], F_GETFD)) == -1 ||
		    fcntl(env->inherit[i], F_SETFD, flags & ~FD_CLOEXEC) ==
		    -1)) {
			fprintf(stderr, "locks: fcntl: %s\n", strerror(errno));
			_exit(EX_OSERR);
		}
	}
	if (env->close_fd >= 0)
		close(env->close_fd);
	snprintf(buf, sizeof buf, "%" PRId64, env->token);
	if (setenv("LOCKS_NAME", env->name, 1) == -1)
		error = errno;
	else if (env->token > 0 ? setenv("LOCKS_TOKEN", buf, 1) == -1 :
	    unsetenv("LOCKS_TOKEN") == -1)
		error = errno;
	else if (snprintf(buf, sizeof buf, "%d", env->contended_fd) < 0 ||
	    (env->contended_fd >= 0 ? setenv("LOCKS_CONTENDED_FD", buf, 1) :
	    unsetenv("LOCKS_CONTENDED_FD")) == -1)
		error = errno;
	if (error != 0) {
		fprintf(stderr, "locks: setenv: %s\n", strerror(error));
		_exit(env->as_flock ? EX_OSERR : EXIT_NOEXEC);
	}
	execvp(env->argv[0], env->argv);
	error = errno;
	fprintf(stderr, "locks: cannot run %s: %s\n", env->argv[0],
	    strerror(error));
	if (env->as_flock)
		_exit(error == ENOMEM ? EX_OSERR : EX_UNAVAILABLE);
	_exit(error == ENOENT ? EXIT_NOTFOUND : EXIT_NOEXEC);
}

/* -F: become the command, which then holds the lock itself. */
static void __attribute__((noreturn))
exec_in_place(const struct command_env *env)
{
	sigset_t	 mask;

	sigprocmask(SIG_SETMASK, NULL, &mask);
	fflush(NULL);
	exec_command(env, &mask);
}

/* Wait for the child to finish; return its exit status, shell style. */
static int
wait_child(pid_t pid, int flags, int *ret_status)
{
	int	 status;
	pid_t	 got;

	while ((got = waitpid(pid, &status, flags)) == -1) {
		if (errno != EINTR)
			die(EX_OSERR, "waitpid: %s", strerror(errno));
	}
	if (got == 0)
		return 0;
	*ret_status = WIFSIGNALED(status) ? 128 + WTERMSIG(status) :
	    WEXITSTATUS(status);
	return 1;
}

/*
 * The daemon went away while the command ran, so the lock is gone: say
 * so, and with --on-lost=term stop the command and exit EX_TEMPFAIL
 * (unless it had already finished).
 */
static int
lost_lock(locks_conn *conn, const char *name, pid_t pid, int on_lost_term,
    int *ret_status)
{
	int	 status;

	fprintf(stderr, "locks: %s; %s is no longer held%s\n",
	    locks_last_message(conn), name,
	    on_lost_term ? ": stopping the command" : "");
	if (!on_lost_term)
		return 0;
	if (wait_child(pid, WNOHANG, &status)) {
		*ret_status = status;
		return 1;
	}
	kill(pid, SIGTERM);
	wait_child(pid, 0, &status);
	*ret_status = EX_TEMPFAIL;
	return 1;
}

/*
 * Whether anyone still holds the write end of the pipe whose read end is
 * fd: a process the command left running that kept what it inherited.
 */
static int
still_inherited(int fd)
{
	struct pollfd	 pfd = { fd, POLLIN, 0 };

	while (poll(&pfd, 1, 0) == -1) {
		if (errno != EINTR)
			return 0;
	}
	return (pfd.revents & (POLLHUP | POLLERR | POLLNVAL)) == 0;
}

/*
 * Run the command and wait for it, watching the daemon connection (conn,
 * NULL without a broker) too.  With inherit_conn the command inherits
 * the connection, which is the lock, and with it the write end of a pipe
 * that tells us afterwards whether anything it left running still holds
 * them (*ret_left_behind).  SIGTERM and SIGHUP are passed on to the
 * command; SIGINT and SIGQUIT keep their effect, as in flock(1), since the
 * command keeps the lock without us.  Returns with SIGTERM, SIGHUP and
 * SIGCHLD still blocked, so that no signal cuts the release short.
 */
static int
run_command(struct command_env *env, locks_conn *conn, int inherit_conn,
    int on_lost_term, struct contended_run *cr, int *ret_left_behind)
{
	struct signalfd_siginfo	 si;
	struct pollfd		 pfd[2];
	sigset_t		 block, orig;
	pid_t			 pid;
	int			 sfd, status, lost = 0, sentinel[2] = { -1, -1 };

	/* An inherited SIG_IGN would reap the child unseen, as in flock(1). */
	signal(SIGCHLD, SIG_DFL);
	sigemptyset(&block);
	sigaddset(&block, SIGTERM);
	sigaddset(&block, SIGHUP);
	sigaddset(&block, SIGCHLD);
	sigprocmask(SIG_BLOCK, &block, &orig);
	if ((sfd = signalfd(-1, &block, SFD_CLOEXEC)) == -1)
		die(EX_OSERR, "signalfd: %s", strerror(errno));
	if (conn != NULL && inherit_conn) {
		if (pipe2(sentinel, O_CLOEXEC) == -1)
			die(EX_OSERR, "pipe: %s", strerror(errno));
		env->inherit[0] = locks_fd(conn);
		env->inherit[1] = sentinel[1];
	}
	fflush(NULL);
	if ((pid = fork()) == -1)
		die(EX_OSERR, "fork: %s", strerror(errno));
	if (pid == 0)
		exec_command(env, &orig);
	if (sentinel[1] != -1)
		close(sentinel[1]);
	if (cr != NULL && cr->child_fd >= 0) {
		close(cr->child_fd);
		cr->child_fd = -1;
	}
	/* Told while the grant came: stop it now, as it was asked. */
	if (cr != NULL && (cr->pid = pid) > 0 && cr->early)
		contended_term(cr);

	pfd[0].fd = sfd;
	pfd[0].events = POLLIN;
	pfd[1].fd = locks_fd(conn);
	pfd[1].events = POLLIN | POLLRDHUP;
	for (;;) {
		if (wait_child(pid, WNOHANG, &status))
			break;
		if (poll(pfd, lost || conn == NULL ? 1 : 2, -1) == -1) {
			if (errno == EINTR)
				continue;
			die(EX_OSERR, "poll: %s", strerror(errno));
		}
		/* locks_check reads what woke us: events, or the loss. */
		if (!lost && conn != NULL && pfd[1].revents != 0 &&
		    locks_check(conn) != LOCKS_OK) {
			lost = 1;
			if (lost_lock(conn, env->name, pid, on_lost_term,
			    &status))
				break;
		}
		if ((pfd[0].revents & POLLIN) &&
		    read(sfd, &si, sizeof si) == (ssize_t)sizeof si &&
		    (si.ssi_signo == SIGTERM || si.ssi_signo == SIGHUP))
			kill(pid, (int)si.ssi_signo);
	}
	close(sfd);
	*ret_left_behind = sentinel[0] != -1 && still_inherited(sentinel[0]);
	if (sentinel[0] != -1)
		close(sentinel[0]);
	return status;
}

/* A bad name is a usage error, found before reaching for the daemon. */
static void
check_name(const char *name)
{
	/* Anything with a '/' is a path, which liblocks opens itself. */
	if (locks_name_valid(name) || strchr(name, '/') != NULL)
		return;
	fprintf(stderr, "locks: invalid lock name \"%s\": " NAME_RULES "\n",
	    name);
	fputs(usage_lines(), stderr);
	exit(EXIT_USAGE);
}

/* Seconds from start to now on the monotonic clock. */
static double
elapsed(const struct timespec *start)
{
	struct timespec	 now;

	clock_gettime(CLOCK_MONOTONIC, &now);
	return (double)(now.tv_sec - start->tv_sec) +
	    (double)(now.tv_nsec - start->tv_nsec) / 1e9;
}

/* With --verbose, say that the lock was not got, and how long we tried. */
static void
say_conflict(const char *label, const struct lock_args *la,
    const struct timespec *start)
{
	if (la->verbose && la->as_flock)	/* flock(1)'s own words */
		fprintf(stderr, "flock: %s\n", la->opts.timeout == 0 ?
		    "failed to get lock" : "timeout while waiting to get lock");
	else if (la->verbose && la->opts.timeout == 0)
		fprintf(stderr, "locks: %s is held; failed to get the lock\n",
		    label);
	else if (la->verbose)
		fprintf(stderr, "locks: %s is held; timed out after %.6f "
		    "seconds waiting to get the lock\n", label,
		    elapsed(start));
}

/* With --verbose, say how long getting the lock took. */
static void
say_took(const char *label, const struct lock_args *la,
    const struct timespec *start)
{
	if (la->verbose && la->as_flock)	/* on stdout, as flock(1) */
		printf("flock: getting lock took %.6f seconds\n",
		    elapsed(start));
	else if (la->verbose)
		fprintf(stderr, "locks: getting %s took %.6f seconds\n", label,
		    elapsed(start));
}

/*
 * Invoked as flock with --verbose, say what runs, as flock(1) does: into
 * stdout's buffer, flushed at the end when stdout is a file, as flock's.
 */
static void
say_executing(const struct lock_args *la, const struct command_env *env)
{
	if (la->verbose && la->as_flock)
		printf("flock: executing %s\n", env->argv[0]);
}

/*
 * Whether a plain flock(2) should stand in for the broker after error:
 * with a fallback (as flock, or --fallback), on anything the broker side
 * refused, so that flock never does less than flock(1); and always for
 * a descriptor the broker could not be handed (a file its holder may no
 * longer open), where the plain flock on it is exactly flock(1)'s.
 */
static int
may_fall_back(int error, int fd, const struct lock_args *la)
{
	if (fd >= 0 && error == LOCKS_E_OPEN)
		return 1;
	/* A local flock(2) is no stand-in for a lock across machines. */
	if (!la->fallback || la->opts.scope == LOCKS_CLUSTER)
		return 0;
	switch (error) {
	case LOCKS_E_CONNECT:
	case LOCKS_E_UNTRUSTED:
	case LOCKS_E_VERSION:
	case LOCKS_E_PERMISSION_DENIED:
	case LOCKS_E_LIMIT:
	case LOCKS_E_UNSUPPORTED:
		return 1;
	default:
		return 0;
	}
}

/*
 * Take the lock on target (a name or a path), or with fd >= 0 on that
 * descriptor, for run or hold.  On failure, set ret_status to the exit
 * status (-E's on a conflict, which may be 0) and return the error.  A
 * conflict is silent unless --verbose, so cron mails nothing, as with
 * flock(1).  An error a plain flock(2) can stand in for is left to the
 * caller, unsaid (may_fall_back).
 */
static int
take_lock(locks_conn *conn, const char *label, const char *target, int fd,
    struct lock_args *la, int64_t *ret_token, int *ret_status)
{
	struct timespec	 start;
	int		 error;

	clock_gettime(CLOCK_MONOTONIC, &start);
	if (fd >= 0)
		error = locks_acquire_fd(conn, fd, &la->opts, ret_token);
	else
		error = locks_acquire(conn, target, &la->opts, ret_token);
	if (error == LOCKS_E_TIMEOUT) {
		say_conflict(label, la, &start);
		*ret_status = la->conflict;
		return error;
	}
	if (error == LOCKS_E_DEADLOCK) {
		/* The daemon's message names the cycle. */
		fprintf(stderr, "locks: deadlock: %s: %s\n", label,
		    locks_last_message(conn));
		*ret_status = la->conflict;
		return error;
	}
	if (may_fall_back(error, fd, la))
		return error;
	if (error != LOCKS_OK) {
		*ret_status = report(error, conn, locks_socket_path(conn));
		return error;
	}
	say_took(label, la, &start);
	return LOCKS_OK;
}

/* The options of run, hold and flock, in one table for getopt_long. */
static const struct option lock_longopts[] = {
	{ "shared", no_argument, NULL, 's' },
	{ "exclusive", no_argument, NULL, 'x' },
	{ "unlock", no_argument, NULL, 'u' },
	{ "nonblock", no_argument, NULL, 'n' },
	{ "nonblocking", no_argument, NULL, 'n' },
	{ "nb", no_argument, NULL, 'n' },
	{ "timeout", required_argument, NULL, 'w' },
	{ "wait", required_argument, NULL, 'w' },
	{ "conflict-exit-code", required_argument, NULL, 'E' },
	{ "no-fork", no_argument, NULL, 'F' },
	{ "close", no_argument, NULL, 'o' },
	{ "fallback", no_argument, NULL, OPT_FALLBACK },
	{ "notify-after", required_argument, NULL, OPT_NOTIFY_AFTER },
	{ "on-lost", required_argument, NULL, OPT_ON_LOST },
	{ "on-contended", required_argument, NULL, OPT_ON_CONTENDED },
	{ "detect-deadlock", no_argument, NULL, OPT_DETECT_DEADLOCK },
	{ "owner", required_argument, NULL, OPT_OWNER },
	{ "cluster", no_argument, NULL, OPT_CLUSTER },
	{ "quiet", no_argument, NULL, 'q' },
	{ "verbose", no_argument, NULL, OPT_VERBOSE },
	{ "socket", required_argument, NULL, OPT_SOCKET },
	{ "help", no_argument, NULL, 'h' },
	{ "version", no_argument, NULL, 'V' },
	{ NULL, 0, NULL, 0 }
};

/* Refuse the options that make no sense together. */
static void
check_lock_options(const struct lock_args *la, int is_run)
{
	if (!is_run && (la->no_fork || la->close || la->unlock ||
	    la->fallback || la->on_lost != ON_LOST_UNSET ||
	    la->contended.mode != ON_CONTENDED_UNSET))
		usage_error("-F, -o, -u, --fallback, --on-lost and "
		    "--on-contended are options of run");
	if (la->no_fork && la->contended.mode != ON_CONTENDED_UNSET)
		usage_error("--on-contended cannot apply with --no-fork: the "
		    "command holds the connection, and no one reads it");
	if (la->opts.scope == LOCKS_CLUSTER &&
	    la->contended.mode != ON_CONTENDED_UNSET)
		usage_error("--on-contended is for local locks: a cluster "
		    "lock's waiters on other machines queue in etcd");
	if (la->opts.scope == LOCKS_CLUSTER && la->opts.detect_deadlock)
		usage_error("--detect-deadlock covers the local daemon's locks "
		    "only: who waits for a cluster lock elsewhere is not known "
		    "here");
	if (la->no_fork && la->close)
		usage_error("the --no-fork and --close options are "
		    "incompatible");
	if (la->no_fork && la->on_lost != ON_LOST_UNSET)
		usage_error("--on-lost cannot apply with --no-fork: the "
		    "command holds the connection, and no one watches it");
	if (la->quiet && la->verbose)
		usage_error("-q and --verbose contradict each other");
	/* As flock, falling back is the default: a cluster lock never does. */
	if (la->opts.scope == LOCKS_CLUSTER && ((la->fallback &&
	    !la->as_flock) || la->unlock))
		usage_error("--cluster takes neither --fallback nor -u: a "
		    "cluster lock lives in etcd, not in a file here");
}

/*
 * Parse the options of run (is_run set) or hold into la, leaving optind
 * at the lock name.  The letters and their meanings are flock(1)'s.
 */
static void
parse_lock_options(int argc, char **argv, const char **sock,
    struct lock_args *la, int is_run)
{
	int	 ch;

	optind = 0;
	while ((ch = getopt_long(argc, argv, "+sxeunw:E:FoqhV", lock_longopts,
	    NULL)) != -1) {
		switch (ch) {
		case 's':
			la->opts.mode = LOCKS_SHARED;
			break;
		case 'x':
		case 'e':
			la->opts.mode = LOCKS_EXCLUSIVE;
			break;
		case 'u':
			la->unlock = 1;
			break;
		case 'n':
			la->nonblock = 1;
			break;
		case 'w':
			la->opts.timeout = parse_seconds(optarg, "-w");
			break;
		case 'E':
			la->conflict = parse_exit_code(optarg);
			break;
		case 'F':
			la->no_fork = 1;
			break;
		case 'o':
			la->close = 1;
			break;
		case OPT_FALLBACK:
			la->fallback = 1;
			break;
		case OPT_ON_LOST:
			if (strcmp(optarg, "term") == 0)
				la->on_lost = ON_LOST_TERM;
			else if (strcmp(optarg, "ignore") == 0)
				la->on_lost = ON_LOST_IGNORE;
			else
				usage_error("--on-lost wants term or ignore");
			break;
		case OPT_ON_CONTENDED:
			if (strcmp(optarg, "term") == 0)
				la->contended.mode = ON_CONTENDED_TERM;
			else if (strcmp(optarg, "ignore") == 0)
				la->contended.mode = ON_CONTENDED_IGNORE;
			else
				usage_error("--on-contended wants term or "
				    "ignore");
			break;
		case OPT_NOTIFY_AFTER:
			la->opts.notify_after = parse_seconds(optarg,
			    "--notify-after");
			break;
		case OPT_DETECT_DEADLOCK:
			la->opts.detect_deadlock = 1;
			break;
		case OPT_CLUSTER:
			la->opts.scope = LOCKS_CLUSTER;
			break;
		case OPT_OWNER:
			if (strlen(optarg) > LOCKS_MAX_OWNER)
				usage_error("--owner wants at most %d bytes",
				    LOCKS_MAX_OWNER);
			la->opts.owner = optarg;
			break;
		case 'q':
			la->quiet = 1;
			break;
		case OPT_VERBOSE:
			la->verbose = 1;
			break;
		case OPT_SOCKET:
			*sock = optarg;
			break;
		case 'h':
			help();
		case 'V':
			print_version();
		default:
			usage_error(NULL);
		}
	}
	check_lock_options(la, is_run);
	if (la->nonblock)
		la->opts.timeout = 0;
	/* The notice shows the holders: detection looks for an ancestor. */
	la->opts.on_blocking = la->quiet && !la->opts.detect_deadlock ? NULL :
	    blocking_notice;
	la->opts.arg = la;
	if (la->contended.mode != ON_CONTENDED_UNSET)
		la->opts.on_contended = contended_notice;
}

/* The shell for -c: $SHELL, else /bin/sh, as flock(1) chooses. */
static char *
command_shell(void)
{
	char	*shell;

	shell = getenv("SHELL");
	return shell != NULL && *shell != '\0' ? shell : (char *)"/bin/sh";
}

/*
 * What run locks, and what it runs: a name, a path (anything with a
 * '/'), or in the descriptor form a descriptor with no command.
 */
struct run_target {
	const char	 *target;	/* the name or path; the number for N */
	char		  label[32];	/* "descriptor N" in the descriptor form */
	int		  fd;		/* the descriptor form's N, else -1 */
	char		**command;	/* NULL in the descriptor form */
	char		 *shell_argv[4]; /* $SHELL -c COMMAND, for -c */
	char		 *path;		/* flock's bare FILE made ./FILE, owned */
};

/* The descriptor form's N: all digits, up to INT_MAX; else -1. */
static int
parse_descriptor(const char *text)
{
	long	 value = 0;

	if (*text == '\0')
		return -1;
	for (; *text != '\0'; text++) {
		if (*text < '0' || *text > '9')
			return -1;
		value = value * 10 + (*text - '0');
		if (value > INT_MAX)
			return -1;
	}
	return (int)value;
}

/* What listings and messages call the target. */
static const char *
target_label(const struct run_target *rt)
{
	return rt->fd >= 0 ? rt->label : rt->target;
}

/*
 * Parse run's operands after the options into rt: the target, then the
 * command (ARGS, or -c 'COMMAND'), or nothing in the descriptor form.
 * Invoked as flock, a bare FILE is a file in the current directory, not
 * a name, but for a cluster lock, which is only ever a name.
 */
static void
parse_run_operands(int argc, char **argv, const struct lock_args *la,
    struct run_target *rt)
{
	size_t	 len;

	memset(rt, 0, sizeof *rt);
	rt->fd = -1;
	if (optind >= argc)
		usage_error("run wants a lock name, a path or a descriptor");
	rt->target = argv[optind++];
	if (optind < argc && (strcmp(argv[optind], "-c") == 0 ||
	    strcmp(argv[optind], "--command") == 0)) {
		if (argc != optind + 2)
			usage_error("%s wants exactly one command argument",
			    argv[optind]);
		rt->shell_argv[0] = command_shell();
		rt->shell_argv[1] = (char *)"-c";
		rt->shell_argv[2] = argv[optind + 1];
		rt->command = rt->shell_argv;
	} else {
		if (optind < argc && strcmp(argv[optind], "--") == 0)
			optind++;
		if (optind < argc)
			rt->command = argv + optind;
	}
	if (rt->command == NULL) {
		if ((rt->fd = parse_descriptor(rt->target)) == -1)
			usage_error("run wants a command after %s, or a "
			    "descriptor number alone", rt->target);
		snprintf(rt->label, sizeof rt->label, "descriptor %d", rt->fd);
		if (la->on_lost != ON_LOST_UNSET)
			usage_error("--on-lost wants a command to watch");
		if (la->contended.mode != ON_CONTENDED_UNSET)
			usage_error("--on-contended wants a command to tell: "
			    "the descriptor form hands the lock over");
		if (la->opts.detect_deadlock)
			usage_error("--detect-deadlock wants a command: the "
			    "descriptor form hands the lock over to the "
			    "descriptor, which the broker cannot see wait");
	} else if (la->unlock && !la->as_flock)
		usage_error("-u unlocks a descriptor: locks run -u N");
	else if (strchr(rt->target, '/') == NULL && la->as_flock &&
	    la->opts.scope != LOCKS_CLUSTER) {
		len = strlen(rt->target) + 3;
		rt->path = xmalloc(len);
		snprintf(rt->path, len, "./%s", rt->target);
		rt->target = rt->path;
	} else if (strchr(rt->target, '/') == NULL)
		check_name(rt->target);
}

/*
 * Open path as flock(1) does: read-only, created 0666 if missing, and a
 * directory read-only; exit with flock(1)'s statuses if it cannot be.
 * The descriptor is inherited by the command, as flock(1)'s is.
 */
static int
open_lock_file(const char *path)
{
	int	 fd;

	fd = open(path, O_RDONLY | O_NOCTTY | O_CREAT, 0666);
	if (fd == -1 && errno == EISDIR)
		fd = open(path, O_RDONLY | O_NOCTTY);
	if (fd != -1)
		return fd;
	fprintf(stderr, "locks: cannot open lock file %s: %s\n", path,
	    strerror(errno));
	if (errno == ENOMEM || errno == EMFILE || errno == ENFILE)
		exit(EX_OSERR);
	if (errno == EROFS || errno == ENOSPC)
		exit(EX_CANTCREAT);
	exit(EX_NOINPUT);
}

/* Exit as flock(1) does when fd is no open descriptor. */
static void
check_descriptor(int fd)
{
	if (fcntl(fd, F_GETFD) != -1)
		return;
	fprintf(stderr, "locks: %d: %s\n", fd, strerror(errno));
	exit(EX_DATAERR);
}

/* Set when the -w timer of a plain flock(2) wait has run out. */
static volatile sig_atomic_t plain_wait_expired;

/* The SIGALRM handler of that timer: interrupt flock(2), say why. */
static void
plain_wait_alarm(int sig)
{
	(void)sig;
	plain_wait_expired = 1;
}

/*
 * Arm the -w timer, or with seconds 0 disarm it.  It fires again every
 * 10 ms after it runs out, in case it first fired just before flock(2)
 * began to sleep.
 */
static void
plain_wait_timer(double seconds)
{
	struct sigaction	 sa;
	struct itimerval	 it;
	double			 whole;

	memset(&sa, 0, sizeof sa);
	memset(&it, 0, sizeof it);
	sigemptyset(&sa.sa_mask);
	/* No SA_RESTART: the signal must cut flock(2) short. */
	sa.sa_handler = seconds > 0 ? plain_wait_alarm : SIG_DFL;
	if (seconds > 0) {
		it.it_value.tv_usec = (suseconds_t)(modf(seconds, &whole) *
		    1e6);
		it.it_value.tv_sec = (time_t)whole;
		if (it.it_value.tv_sec == 0 && it.it_value.tv_usec == 0)
			it.it_value.tv_usec = 1;
		it.it_interval.tv_usec = 10000;
	}
	if (setitimer(ITIMER_REAL, &it, NULL) == -1 ||
	    sigaction(SIGALRM, &sa, NULL) == -1)
		die(EX_OSERR, "cannot set up the -w timer: %s",
		    strerror(errno));
}

/*
 * Open path read-write on the descriptor number *fd holds, once: NFS
 * emulates flock with fcntl, which wants LOCK_EX on a writable file.
 */
static int
reopen_rdwr(int *fd, const char *path)
{
	static int	 tried;
	int		 rw;

	if (tried++ || (rw = open(path, O_RDWR | O_NOCTTY | O_CLOEXEC)) == -1)
		return -1;
	if (dup3(rw, *fd, O_CLOEXEC) == -1) {
		close(rw);
		return -1;
	}
	close(rw);
	return 0;
}

/*
 * flock(2) fd with op (LOCK_SH, LOCK_EX or LOCK_UN) and la's patience;
 * return 1 once done, 0 on a conflict or timeout; exit as flock(1) does
 * on any other error, naming label.  fd is of path (NULL: a descriptor
 * the caller gave), which may be reopened read-write for NFS.
 */
static int
plain_flock(int fd, int op, const char *label, const char *label_path,
    const struct lock_args *la)
{
	int	 error = 0;

	if (la->opts.timeout == 0)
		op |= LOCK_NB;
	else if (la->opts.timeout > 0) {
		plain_wait_expired = 0;
		plain_wait_timer(la->opts.timeout);
	}
	while (flock(fd, op) == -1) {
		if (errno == EINTR && !plain_wait_expired)
			continue;
		/* NFS wants a writable file for LOCK_EX, as flock(1) knows. */
		if ((errno == EIO || errno == EBADF) && label_path != NULL &&
		    (op & LOCK_EX) && reopen_rdwr(&fd, label_path) == 0)
			continue;
		error = errno;
		break;
	}
	if (la->opts.timeout > 0)
		plain_wait_timer(0);
	if (error == 0)
		return 1;
	if (error == EWOULDBLOCK || error == EINTR)
		return 0;
	fprintf(stderr, "locks: %s: %s\n", label, strerror(error));
	exit(error == ENOLCK || error == ENOMEM ? EX_OSERR : EX_DATAERR);
}

/*
 * The lock file of a name when no broker answers: locks/NAME beside the
 * socket the broker would serve (--socket or $LOCKS_SOCKET, else the
 * system socket if there is one, as liblocks looks, else the default),
 * where locksd keeps it unless started with --lock-dir.
 */
static char *
fallback_lock_file(const char *sock, const char *name)
{
	char		 buf[PATH_MAX], *path, *slash;
	const char	*sys;
	struct stat	 st;
	size_t		 size;

	if (sock == NULL && getenv("LOCKS_SOCKET") == NULL && geteuid() != 0) {
		sys = getenv("LOCKS_SYSTEM_SOCKET");
		if (sys == NULL || *sys != '/')
			sys = "/run/locksd/locksd.sock";
		if (lstat(sys, &st) == 0)
			sock = sys;
	}
	sock = socket_path(sock, buf, sizeof buf);
	size = strlen(sock) + strlen(name) + sizeof "/locks/";
	path = xmalloc(size);
	slash = strrchr(sock, '/');
	snprintf(path, size, "%.*slocks/%s", slash != NULL ?
	    (int)(slash - sock + 1) : 0, sock, name);
	return path;
}

/*
 * Do what flock(1) does: a plain flock(2) on the target's file or
 * descriptor, then run the command holding it (or with -u, unlock).  This
 * is the fallback when no broker answers (why says so, for --verbose),
 * and -u's only way.
 */
static int
run_plain(struct run_target *rt, struct lock_args *la, const char *sock,
    const char *why)
{
	struct command_env env = { rt->command, rt->target, 0, { -1, -1, -1 },
	    -1, la->as_flock, -1 };
	struct timespec	 start;
	char		*path = NULL;
	int		 fd, op, status, left_behind;

	op = la->unlock ? LOCK_UN : la->opts.mode == LOCKS_SHARED ? LOCK_SH :
	    LOCK_EX;
	if (rt->fd == -1 && strchr(rt->target, '/') == NULL)
		rt->target = path = fallback_lock_file(sock, rt->target);
	if (why != NULL && la->verbose)
		fprintf(stderr, "locks: %s; falling back to a plain flock(2) "
		    "on %s\n", why, target_label(rt));
	fd = rt->fd >= 0 ? rt->fd : open_lock_file(rt->target);
	clock_gettime(CLOCK_MONOTONIC, &start);
	if (!plain_flock(fd, op, target_label(rt), rt->fd >= 0 ? NULL :
	    rt->target, la)) {
		say_conflict(target_label(rt), la, &start);
		free(path);
		return la->conflict;
	}
	if (!la->unlock)
		say_took(target_label(rt), la, &start);
	if (rt->command == NULL) {
		free(path);
		return 0;
	}
	if (la->close)
		env.close_fd = fd;
	say_executing(la, &env);
	if (la->no_fork)
		exec_in_place(&env);
	status = run_command(&env, NULL, 0, 0, NULL, &left_behind);
	free(path);
	return status;
}

/*
 * After the command: if nothing it left running kept the connection,
 * release with a round trip, not just a close, so the lock is free by
 * the time we exit and a script's next flock(1) cannot race us.  If
 * something did, only close our copy: the lock ends with the last
 * holder, as an inherited flock(1) descriptor does.
 */
static void
end_run(locks_conn *conn, const struct run_target *rt,
    const struct lock_args *la, int left_behind)
{
	if (left_behind && la->verbose)
		fprintf(stderr, "locks: %s stays held by what the command "
		    "left running\n", rt->target);
	else if (!left_behind && locks_held(conn, rt->target))
		locks_release(conn, rt->target);
	locks_close(conn);
}

/*
 * Whether fd's open file description holds a flock already (the kernel
 * lists a description's locks in /proc/self/fdinfo): then flock(1)'s
 * flock(2) on it converts the lock in place, with no queue to join.
 */
static int
descriptor_flocked(int fd)
{
	char	 path[64], line[256];
	FILE	*fp;
	int	 found = 0;

	snprintf(path, sizeof path, "/proc/self/fdinfo/%d", fd);
	if ((fp = fopen(path, "re")) == NULL)
		return 0;
	while (!found && fgets(line, sizeof line, fp) != NULL)
		found = strncmp(line, "lock:", 5) == 0 &&
		    strstr(line, "FLOCK") != NULL;
	fclose(fp);
	return found;
}

/*
 * locks run (and flock): take the lock through the broker and run the
 * command under it; in the descriptor form, leave the lock on the
 * descriptor.  With a fallback, no broker means a plain flock(2).
 */
static int
run_with_broker(struct run_target *rt, struct lock_args *la,
    const char *sock)
{
	struct command_env env = { rt->command, rt->target, 0, { -1, -1, -1 },
	    -1, la->as_flock, -1 };
	char		 buf[PATH_MAX];
	locks_conn	*conn;
	char		*owner = NULL;
	int		 error, status, left_behind;

	if (rt->fd >= 0)
		check_descriptor(rt->fd);
	else if (strchr(rt->target, '/') != NULL)
		close(open_lock_file(rt->target));
	/* A descriptor holding its flock already converts it in place. */
	if (rt->fd >= 0 && descriptor_flocked(rt->fd))
		return run_plain(rt, la, sock, NULL);
	if ((error = locks_connect(sock, la->as_flock ? "flock" :
	    "locks run", &conn)) != LOCKS_OK) {
		if (may_fall_back(error, -1, la))
			return run_plain(rt, la, sock, locks_last_message(NULL));
		return report(error, NULL, socket_path(sock, buf, sizeof buf));
	}
	if (la->opts.owner == NULL && rt->command != NULL)
		la->opts.owner = owner = default_owner(rt->shell_argv[0] !=
		    NULL ? rt->shell_argv + 2 : rt->command);
	/* Before the grant: a notice may come along with it. */
	if (la->contended.mode != ON_CONTENDED_UNSET) {
		contended_open(&la->contended);
		env.contended_fd = env.inherit[2] = la->contended.child_fd;
	}
	error = take_lock(conn, target_label(rt), rt->target, rt->fd, la,
	    &env.token, &status);
	free(owner);
	la->opts.owner = NULL;
	if (error != LOCKS_OK)
		contended_close(&la->contended);
	if (error != LOCKS_OK && may_fall_back(error, rt->fd, la)) {
		snprintf(buf, sizeof buf, "%s", locks_last_message(conn));
		locks_close(conn);
		return run_plain(rt, la, sock, buf);
	}
	if (error != LOCKS_OK || rt->fd >= 0) {
		locks_close(conn);
		return error != LOCKS_OK ? status : 0;
	}
	say_executing(la, &env);
	if (la->no_fork) {
		env.inherit[0] = locks_fd(conn);
		exec_in_place(&env);
	}
	status = run_command(&env, conn, !la->close,
	    la->on_lost != ON_LOST_IGNORE, &la->contended, &left_behind);
	contended_close(&la->contended);
	end_run(conn, rt, la, left_behind);
	return status;
}

/*
 * locks run, and locks invoked as flock (as_flock): flock(1)'s command
 * line, its statuses, and without a broker its plain flock(2) if asked.
 */
static int
cmd_run(int argc, char **argv, const char *sock, int as_flock)
{
	struct lock_args la = LOCK_ARGS_INIT;
	struct run_target rt;
	int		 status;

	la.as_flock = la.fallback = as_flock;
	parse_lock_options(argc, argv, &sock, &la, 1);
	parse_run_operands(argc, argv, &la, &rt);
	if (la.unlock)
		status = run_plain(&rt, &la, sock, NULL);
	else
		status = run_with_broker(&rt, &la, sock);
	free(rt.path);
	return status;
}

/*
 * Whether stdin, polled with revents, has reached its end (or is not
 * there at all); what comes on it is read and dropped.
 */
static int
stdin_ended(short revents)
{
	char	 buf[512];
	ssize_t	 n;

	if (revents & POLLNVAL)
		return 1;
	if (revents == 0)
		return 0;
	n = read(STDIN_FILENO, buf, sizeof buf);
	return n == 0 || (n == -1 && errno != EINTR && errno != EAGAIN);
}

/* While hold waits for its grant: stdin's end gives up the wait. */
struct eof_watch {
	pthread_t	 thread;
	int		 stop[2];	/* a pipe: written to end the watch */
	const char	*name;
	int		 conflict;	/* exit status if stdin ends first */
	int		 verbose;
};

/*
 * The watch thread: read and drop what comes on stdin; at its end, exit
 * the whole process, which closes the connection and so cancels the
 * wait, since no token has been printed yet.
 */
static void *
eof_watch_main(void *arg)
{
	struct eof_watch	*w = arg;
	struct pollfd		 pfd[2];

	pfd[0].fd = w->stop[0];
	pfd[0].events = POLLIN;
	pfd[1].fd = STDIN_FILENO;
	pfd[1].events = POLLIN;
	for (;;) {
		if (poll(pfd, 2, -1) == -1) {
			if (errno == EINTR)
				continue;
			return NULL;
		}
		if (pfd[0].revents != 0)
			return NULL;
		if (stdin_ended(pfd[1].revents))
			break;
	}
	if (w->verbose)
		fprintf(stderr, "locks: stdin ended while waiting for %s; "
		    "giving up\n", w->name);
	_exit(w->conflict);
}

/* Start watching stdin for its end while hold waits. */
static void
eof_watch_start(struct eof_watch *w, const char *name,
    const struct lock_args *la)
{
	int	 error;

	w->name = name;
	w->conflict = la->conflict;
	w->verbose = la->verbose;
	if (pipe2(w->stop, O_CLOEXEC) == -1)
		die(EX_OSERR, "pipe: %s", strerror(errno));
	if ((error = pthread_create(&w->thread, NULL, eof_watch_main, w)) !=
	    0)
		die(EX_OSERR, "pthread_create: %s", strerror(error));
}

/* Stop the watch: the wait is over, granted or not. */
static void
eof_watch_stop(struct eof_watch *w)
{
	if (write(w->stop[1], "", 1) == -1)
		die(EX_OSERR, "cannot stop the stdin watch: %s",
		    strerror(errno));
	pthread_join(w->thread, NULL);
	close(w->stop[0]);
	close(w->stop[1]);
}

/*
 * Take the lock for hold.  A lock free now is granted whatever stdin
 * says, so "locks hold X </dev/null" takes and lets go; only a wait is
 * given up when stdin ends.
 */
static int
hold_take(locks_conn *conn, const char *name, struct lock_args *la,
    int64_t *ret_token, int *ret_status)
{
	struct locks_acquire_opts now = la->opts;
	struct eof_watch watch;
	struct timespec	 start;
	int		 error;

	/* -n never waits, so there is no wait to give up. */
	if (la->opts.timeout == 0)
		return take_lock(conn, name, name, -1, la, ret_token,
		    ret_status);
	clock_gettime(CLOCK_MONOTONIC, &start);
	now.timeout = 0;
	now.on_blocking = NULL;
	if (locks_acquire(conn, name, &now, ret_token) == LOCKS_OK) {
		say_took(name, la, &start);
		return LOCKS_OK;
	}
	eof_watch_start(&watch, name, la);
	error = take_lock(conn, name, name, -1, la, ret_token, ret_status);
	eof_watch_stop(&watch);
	return error;
}

/*
 * Hold the lock until stdin reaches its end or SIGTERM comes through
 * sfd; return 0, or EX_TEMPFAIL if locksd went away and took the lock.
 */
static int
hold_until_eof(locks_conn *conn, const char *name, int sfd)
{
	struct pollfd	 pfd[3];
	int		 status = -1;

	pfd[0].fd = sfd;
	pfd[0].events = POLLIN;
	pfd[1].fd = STDIN_FILENO;
	pfd[1].events = POLLIN;
	pfd[2].fd = locks_fd(conn);
	pfd[2].events = POLLIN | POLLRDHUP;
	while (status == -1) {
		if (poll(pfd, 3, -1) == -1) {
			if (errno == EINTR)
				continue;
			die(EX_OSERR, "poll: %s", strerror(errno));
		}
		if (pfd[0].revents & POLLIN)
			status = 0;
		if (stdin_ended(pfd[1].revents))
			status = 0;
		if (pfd[2].revents != 0 && locks_check(conn) != LOCKS_OK) {
			fprintf(stderr, "locks: %s; %s is no longer held\n",
			    locks_last_message(conn), name);
			status = EX_TEMPFAIL;
		}
	}
	return status;
}

/*
 * locks hold: take a lock, print its token, hold it until told.  While
 * it waits, stdin's end gives up (the conflict status) and SIGTERM ends
 * it as any program (143); no token was printed, nothing was held.
 */
static int
cmd_hold(int argc, char **argv, const char *sock)
{
	struct lock_args la = LOCK_ARGS_INIT;
	locks_conn	*conn;
	const char	*name;
	sigset_t	 block;
	int64_t		 token;
	int		 sfd, status, error;

	parse_lock_options(argc, argv, &sock, &la, 0);
	if (optind >= argc)
		usage_error("hold wants a lock name or a path");
	if (argc - optind > 1)
		usage_error("hold takes one lock name or path and no command");
	name = argv[optind];
	if (strchr(name, '/') == NULL)
		check_name(name);
	else
		close(open_lock_file(name));

	conn = connect_or_exit(sock, "locks hold");
	error = hold_take(conn, name, &la, &token, &status);
	if (error != LOCKS_OK) {
		locks_close(conn);
		return status;
	}
	/* Catch SIGTERM before the token says we hold, or one may kill us. */
	sigemptyset(&block);
	sigaddset(&block, SIGTERM);
	sigprocmask(SIG_BLOCK, &block, NULL);
	if ((sfd = signalfd(-1, &block, SFD_CLOEXEC)) == -1)
		die(EX_OSERR, "signalfd: %s", strerror(errno));
	/* One line, flushed now: a coproc reads it to know it holds. */
	printf("%" PRId64 "\n", token);
	if (fflush(stdout) == EOF)
		die(EX_OSERR, "error writing the token: %s", strerror(errno));
	status = hold_until_eof(conn, name, sfd);
	close(sfd);
	if (locks_held(conn, name))
		locks_release(conn, name);
	locks_close(conn);
	return status;
}

/* The columns of list -o; the first LIST_DEFAULT_COLUMNS are the default. */
enum list_column {
	COL_NAME,
	COL_STATE,
	COL_MODE,
	COL_PID,
	COL_USER,
	COL_CLIENT,
	COL_SINCE,
	COL_HELD,
	COL_OWNER,
	COL_UID,
	COL_TOKEN,
	COL_NODE,
	COL_COUNT
};

#define LIST_DEFAULT_COLUMNS	(COL_OWNER + 1)
#define LIST_MAX_COLUMNS	32	/* -o's list, repeats included */

/* Column names, as the header shows them and -o takes them (any case). */
static const char *const list_column_names[COL_COUNT] = {
	[COL_NAME] = "NAME",
	[COL_STATE] = "STATE",
	[COL_MODE] = "MODE",
	[COL_PID] = "PID",
	[COL_USER] = "USER",
	[COL_CLIENT] = "CLIENT",
	[COL_SINCE] = "SINCE",
	[COL_HELD] = "HELD",
	[COL_OWNER] = "OWNER",
	[COL_UID] = "UID",
	[COL_TOKEN] = "TOKEN",
	[COL_NODE] = "NODE",
};

/* The options of list, and of check's printing of holders. */
struct list_opts {
	int		 json;
	int		 all;		/* -a: also files held only outside */
	int		 noheadings;	/* -n */
	int		 raw;		/* -r: lslocks -r's format */
	int		 table_given;	/* -o, -n or -r: not with --json */
	int		 cluster;	/* --cluster: the cluster's locks */
	int		 columns_given;	/* -o */
	size_t		 ncolumns;
	int		 columns[LIST_MAX_COLUMNS];	/* enum list_column */
};

/* Set the default columns and format. */
static void
list_opts_init(struct list_opts *lo)
{
	int	 c;

	memset(lo, 0, sizeof *lo);
	for (c = 0; c < LIST_DEFAULT_COLUMNS; c++)
		lo->columns[lo->ncolumns++] = c;
}

/* The column named by len bytes at name, in any case; else a usage error. */
static int
list_column_by_name(const char *name, size_t len)
{
	char	 valid[256] = "";
	char	*shown;
	int	 c;

	for (c = 0; c < COL_COUNT; c++) {
		if (strlen(list_column_names[c]) == len &&
		    strncasecmp(list_column_names[c], name, len) == 0)
			return c;
	}
	for (c = 0; c < COL_COUNT; c++) {
		strcat(valid, list_column_names[c]);
		if (c + 1 < COL_COUNT)
			strcat(valid, ",");
	}
	/* Only so much of what the user typed is worth echoing back. */
	shown = strndup(name, len < 64 ? len : 64);
	if (shown == NULL)
		die(EX_OSERR, "out of memory");
	usage_error("unknown column \"%s\" for -o; the columns are %s",
	    clean(shown, 1), valid);
}

/*
 * Parse -o's comma-separated column names into lo, as lslocks does: a
 * list that starts with '+' adds to the default columns.
 */
static void
list_parse_columns(const char *text, struct list_opts *lo)
{
	const char	*end;

	if (*text == '+')
		text++;
	else
		lo->ncolumns = 0;
	for (;; text = end + 1) {
		end = strchrnul(text, ',');
		if (lo->ncolumns == LIST_MAX_COLUMNS)
			usage_error("-o takes at most %d columns",
			    LIST_MAX_COLUMNS);
		lo->columns[lo->ncolumns++] = list_column_by_name(text,
		    (size_t)(end - text));
		if (*end == '\0')
			break;
	}
}

/*
 * Copy text for list -r, escaped as lslocks -r escapes it: blanks, '\',
 * control characters and bytes past ASCII become \xNN, so that a row
 * splits on its spaces.
 */
static char *
raw_escape(const char *text)
{
	const unsigned char	*s = (const unsigned char *)text;
	char			*out, *p;

	p = out = xmalloc(strlen(text) * 4 + 1);
	for (; *s != '\0'; s++) {
		if (*s <= ' ' || *s == '\\' || *s >= 0x7f)
			p += sprintf(p, "\\x%02x", *s);
		else
			*p++ = (char)*s;
	}
	*p = '\0';
	return out;
}

/* A table of strings, row by row, for list. */
struct table {
	char		**cells;
	size_t		  ncols;
	size_t		  nrows;
	size_t		  cap;
	int		  raw;		/* -r: escape for raw_escape's rules */
};

/* Add a row of t->ncols strings, copied and made safe to print. */
static void
table_add(struct table *t, const char **row)
{
	const char	*cell;
	size_t		 i;

	if (t->nrows == t->cap) {
		t->cap = t->cap == 0 ? 16 : t->cap * 2;
		t->cells = reallocarray(t->cells, t->cap,
		    t->ncols * sizeof *t->cells);
		if (t->cells == NULL)
			die(EX_OSERR, "out of memory");
	}
	for (i = 0; i < t->ncols; i++) {
		cell = *row[i] != '\0' ? row[i] : "-";
		t->cells[t->nrows * t->ncols + i] = t->raw ? raw_escape(cell) :
		    clean(cell, 0);
	}
	t->nrows++;
}

/*
 * Print the table, with aligned columns or, raw, one space between
 * cells; then free its cells.
 */
static void
table_print(struct table *t)
{
	size_t	*widths;
	size_t	 r, c, n;
	char	*cell;

	if ((widths = calloc(t->ncols, sizeof *widths)) == NULL)
		die(EX_OSERR, "out of memory");
	for (r = 0; r < t->nrows && !t->raw; r++) {
		for (c = 0; c < t->ncols; c++) {
			n = strlen(t->cells[r * t->ncols + c]);
			if (n > widths[c])
				widths[c] = n;
		}
	}
	for (r = 0; r < t->nrows; r++) {
		for (c = 0; c < t->ncols; c++) {
			cell = t->cells[r * t->ncols + c];
			if (c + 1 == t->ncols)
				printf("%s\n", cell);
			else if (t->raw)
				printf("%s ", cell);
			else
				printf("%-*s  ", (int)widths[c], cell);
			free(cell);
		}
	}
	free(widths);
	free(t->cells);
}

/* Format a unix time as local "YYYY-MM-DD HH:MM:SS"; "" if unknown. */
static void
format_date(double t, char *buf, size_t size)
{
	struct tm	 tm;
	time_t		 secs;

	buf[0] = '\0';
	if (t <= 0 || !isfinite(t) || t > 1e15)
		return;
	secs = (time_t)t;
	if (localtime_r(&secs, &tm) != NULL)
		strftime(buf, size, "%Y-%m-%d %H:%M:%S", &tm);
}

/*
 * Format a duration by its units from the first that is not zero: spaced
 * for people ("1d 2h 3m 4s", status) or compact, zero-padded, for a
 * column ("1m05s", list).
 */
static void
format_span(double seconds, int compact, char *buf, size_t size)
{
	static const char	 letters[] = "dhms";
	long long		 s, units[4];
	size_t			 n = 0;
	int			 i, started = 0;

	/* A clock set back since the grant makes it negative: say 0s. */
	s = seconds > 0 && seconds < 1e15 ? (long long)seconds : 0;
	units[0] = s / 86400;
	units[1] = s / 3600 % 24;
	units[2] = s / 60 % 60;
	units[3] = s % 60;
	buf[0] = '\0';
	for (i = 0; i < 4 && n < size; i++) {
		if (!started && units[i] == 0 && i < 3)
			continue;
		n += (size_t)snprintf(buf + n, size - n, "%s%0*lld%c",
		    started && !compact ? " " : "", started && compact ? 2 : 1,
		    units[i], letters[i]);
		started = 1;
	}
}

/* What list_add_holder needs besides the holder: a table and a clock. */
struct list_view {
	const struct list_opts	*opts;
	struct table		 table;
	double			 now;	/* realtime, like the daemon's since */
	uid_t			 user_uid;	/* the last uid looked up */
	char			 user[LOGIN_NAME_MAX + 1];	/* its name */
};

/* The user name of uid, or its number if it has none (cached: one lookup). */
static const char *
list_user(struct list_view *v, uid_t uid)
{
	struct passwd	*pw;

	if (v->user[0] != '\0' && v->user_uid == uid)
		return v->user;
	v->user_uid = uid;
	if ((pw = getpwuid(uid)) != NULL && pw->pw_name[0] != '\0')
		snprintf(v->user, sizeof v->user, "%s", pw->pw_name);
	else
		snprintf(v->user, sizeof v->user, "%lu", (unsigned long)uid);
	return v->user;
}

/* Add the row of lo's columns, picked from every column's cell. */
static void
list_add_row(struct list_view *v, const char *const *cells)
{
	const char	*row[LIST_MAX_COLUMNS];
	size_t		 i;

	for (i = 0; i < v->opts->ncolumns; i++)
		row[i] = cells[v->opts->columns[i]];
	table_add(&v->table, row);
}

/*
 * Add a row for one holder or waiter of lock.  A waiter's SINCE is when
 * it began to wait, so its HELD is how long it has waited.
 */
static void
list_add_holder(struct list_view *v, const char *name, const locks_holder *h,
    int waiting)
{
	char		 pid[32], uid[32], since[64], held[64], token[32];
	const char	*cells[COL_COUNT];
	double		 granted = locks_holder_since(h);

	snprintf(pid, sizeof pid, "%ld", (long)locks_holder_pid(h));
	snprintf(uid, sizeof uid, "%lu", (unsigned long)locks_holder_uid(h));
	snprintf(token, sizeof token, "%" PRId64, locks_holder_token(h));
	format_date(granted, since, sizeof since);
	format_span(v->now - granted, 1, held, sizeof held);
	cells[COL_NAME] = name;
	cells[COL_STATE] = waiting ? "waiting" : "held";
	cells[COL_MODE] = locks_mode_name(locks_holder_mode(h));
	cells[COL_PID] = pid;
	cells[COL_UID] = uid;
	cells[COL_USER] = list_user(v, locks_holder_uid(h));
	cells[COL_CLIENT] = locks_holder_client(h);
	cells[COL_SINCE] = since;
	cells[COL_HELD] = since[0] != '\0' ? held : "";
	cells[COL_OWNER] = locks_holder_owner(h);
	cells[COL_TOKEN] = waiting ? "" : token;
	cells[COL_NODE] = locks_holder_node(h);
	if (locks_holder_external(h)) {
		/* Outside the broker: no label, time or token; a uid if seen. */
		cells[COL_STATE] = "external";
		if (locks_holder_uid(h) == (uid_t)-1)
			cells[COL_UID] = cells[COL_USER] = "";
		cells[COL_CLIENT] = "";
		cells[COL_SINCE] = cells[COL_HELD] = cells[COL_TOKEN] = "";
		cells[COL_OWNER] = locks_holder_command(h);
	}
	list_add_row(v, cells);
}

/* Add the row of a lock whose holder, outside the broker, is not known. */
static void
list_add_unknown_outside(struct list_view *v, const char *name)
{
	const char	*cells[COL_COUNT];
	int		 c;

	for (c = 0; c < COL_COUNT; c++)
		cells[c] = "";
	cells[COL_NAME] = name;
	cells[COL_STATE] = "external";
	list_add_row(v, cells);
}

/* Print the locks of a listing as lo says; nothing at all when empty. */
static void
list_print(const locks_list *list, const struct list_opts *lo)
{
	struct list_view	 v;
	struct timespec		 now;
	const locks_lock	*lock;
	size_t			 i, j;

	if (locks_list_count(list) == 0)
		return;
	memset(&v, 0, sizeof v);
	v.opts = lo;
	v.table.ncols = lo->ncolumns;
	v.table.raw = lo->raw;
	clock_gettime(CLOCK_REALTIME, &now);
	v.now = (double)now.tv_sec + (double)now.tv_nsec / 1e9;
	if (!lo->noheadings)
		list_add_row(&v, list_column_names);
	for (i = 0; i < locks_list_count(list); i++) {
		lock = locks_list_lock(list, i);
		for (j = 0; j < locks_lock_nholders(lock); j++)
			list_add_holder(&v, locks_lock_name(lock),
			    locks_lock_holder(lock, j), 0);
		/* Waiters and no holder: someone outside has it. */
		if (locks_lock_nholders(lock) == 0)
			list_add_unknown_outside(&v, locks_lock_name(lock));
		for (j = 0; j < locks_lock_nwaiters(lock); j++)
			list_add_holder(&v, locks_lock_name(lock),
			    locks_lock_waiter(lock, j), 1);
	}
	table_print(&v.table);
}

/* The end of the JSON string that starts at p (its '"'); NULL if cut. */
static const char *
json_string_end(const char *p)
{
	for (p++; *p != '\0'; p++) {
		if (*p == '\\' && p[1] != '\0')
			p++;
		else if (*p == '"')
			return p + 1;
	}
	return NULL;
}

/* The end of the JSON value that starts at p; NULL if cut off. */
static const char *
json_value_end(const char *p)
{
	int	 depth = 0;

	for (;;) {
		switch (*p) {
		case '\0':
			return NULL;
		case '"':
			if ((p = json_string_end(p)) == NULL || depth == 0)
				return p;
			continue;
		case '[':
		case '{':
			depth++;
			break;
		case ']':
		case '}':
			/* At depth 0, the end of the object a scalar is in. */
			if (depth == 0)
				return p;
			if (--depth == 0)
				return p + 1;
			break;
		case ',':
			if (depth == 0)
				return p;
			break;
		}
		p++;
	}
}

/*
 * Find the value of member key in a JSON object written by json-c's
 * plain mode (no spaces between tokens); set *ret_len and return its
 * start, or NULL if there is no such member.
 */
static const char *
json_member(const char *text, const char *key, size_t *ret_len)
{
	const char	*p = text, *colon, *end;
	size_t		 klen = strlen(key);

	if (*p++ != '{')
		return NULL;
	while (*p == '"') {
		if ((colon = json_string_end(p)) == NULL || *colon != ':' ||
		    (end = json_value_end(colon + 1)) == NULL)
			return NULL;
		if ((size_t)(colon - p) == klen + 2 &&
		    strncmp(p + 1, key, klen) == 0) {
			*ret_len = (size_t)(end - colon - 1);
			return colon + 1;
		}
		p = *end == ',' ? end + 1 : end;
	}
	return NULL;
}

/*
 * Print the listing's locks as one JSON array, the data without the
 * reply's id and ok around it; liblocks gives only the whole reply.
 */
static int
list_print_json(const locks_list *list)
{
	const char	*locks;
	size_t		 len;

	if ((locks = json_member(locks_list_json(list), "locks", &len)) ==
	    NULL) {
		fprintf(stderr, "locks: the list reply has no locks array\n");
		return EX_SOFTWARE;
	}
	printf("%.*s\n", (int)len, locks);
	return 0;
}

/* Apply one of list's own options, -a, -o, -n or -r, to lo. */
static void
list_option(int ch, const char *arg, struct list_opts *lo)
{
	switch (ch) {
	case 'a':
		lo->all = 1;
		return;
	case 'o':
		list_parse_columns(arg, lo);
		lo->columns_given = 1;
		break;
	case 'n':
		lo->noheadings = 1;
		break;
	case 'r':
		lo->raw = 1;
		break;
	}
	lo->table_given = 1;
}

/*
 * Parse the options list and status share (--json, --socket, --help, and
 * for list, given ret_list, -a, -o, -n and -r); returns whether --json
 * was given and leaves optind at the operands.
 */
static int
parse_view_options(int argc, char **argv, const char **sock,
    struct list_opts *ret_list)
{
	static const struct option longopts[] = {
		{ "json", no_argument, NULL, OPT_JSON },
		{ "all", no_argument, NULL, 'a' },
		{ "output", required_argument, NULL, 'o' },
		{ "noheadings", no_argument, NULL, 'n' },
		{ "raw", no_argument, NULL, 'r' },
		{ "cluster", no_argument, NULL, OPT_CLUSTER },
		{ "socket", required_argument, NULL, OPT_SOCKET },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 }
	};
	struct list_opts lo;
	int	 ch;

	list_opts_init(&lo);
	optind = 0;
	while ((ch = getopt_long(argc, argv, "ao:nrh", longopts, NULL)) !=
	    -1) {
		switch (ch) {
		case OPT_JSON:
			lo.json = 1;
			break;
		case 'a':
		case 'o':
		case 'n':
		case 'r':
			if (ret_list == NULL)
				usage_error("-a, -o, -n and -r are options of "
				    "list");
			list_option(ch, optarg, &lo);
			break;
		case OPT_SOCKET:
			*sock = optarg;
			break;
		case OPT_CLUSTER:
			if (ret_list == NULL)
				usage_error("--cluster is an option of list");
			lo.cluster = 1;
			break;
		case 'h':
			help();
		default:
			usage_error(NULL);
		}
	}
	/* Other machines' holders: say which, unless -o chose. */
	if (lo.cluster && !lo.columns_given)
		lo.columns[lo.ncolumns++] = COL_NODE;
	if (lo.json && lo.table_given)
		usage_error("--json prints every field: -o, -n and -r are "
		    "for the table");
	if (ret_list != NULL)
		*ret_list = lo;
	return lo.json;
}

/*
 * Report a failed list query.  The daemon timing out is not a lock's
 * doing, so it must not exit 1, which check means "held": EX_TEMPFAIL.
 */
static int
report_query(int error, locks_conn *conn)
{
	int	 status;

	status = report(error, conn, locks_socket_path(conn));
	return error == LOCKS_E_TIMEOUT ? EX_TEMPFAIL : status;
}

/*
 * locks list: show holders and waiters.  Given a name, outside holders
 * count without -a, and a free lock says so (to people: not with -n or -r).
 */
static int
cmd_list(int argc, char **argv, const char *sock)
{
	struct list_opts lo;
	locks_conn	*conn;
	locks_list	*list;
	const char	*name = NULL;
	char		*shown;
	int		 error, status = 0;

	parse_view_options(argc, argv, &sock, &lo);
	if (argc - optind > 1)
		usage_error("list takes at most one lock name");
	if (optind < argc)
		check_name(name = argv[optind]);

	conn = connect_or_exit(sock, "locks list");
	if ((error = locks_list_query(conn, name, lo.cluster ?
	    LOCKS_LIST_CLUSTER : lo.all || name != NULL ? LOCKS_LIST_ALL : 0,
	    &list)) != LOCKS_OK) {
		status = report_query(error, conn);
		locks_close(conn);
		return status;
	}
	if (lo.json)
		status = list_print_json(list);
	else if (name != NULL && locks_list_count(list) == 0) {
		if (!lo.noheadings && !lo.raw) {
			shown = clean(name, 0);
			printf("%s: free\n", shown);
			free(shown);
		}
	} else
		list_print(list, &lo);
	locks_list_free(list);
	locks_close(conn);
	return status;
}

/*
 * locks check: exit 0 if NAME is free, EXIT_HELD if anyone holds it,
 * outside holders included, printing them unless -q.
 */
static int
cmd_check(int argc, char **argv, const char *sock)
{
	static const struct option longopts[] = {
		{ "quiet", no_argument, NULL, 'q' },
		{ "socket", required_argument, NULL, OPT_SOCKET },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 }
	};
	struct list_opts lo;
	const locks_lock *lock;
	locks_conn	*conn;
	locks_list	*list;
	const char	*name;
	size_t		 i;
	int		 ch, error, status, quiet = 0, held = 0;

	optind = 0;
	while ((ch = getopt_long(argc, argv, "qh", longopts, NULL)) != -1) {
		switch (ch) {
		case 'q':
			quiet = 1;
			break;
		case OPT_SOCKET:
			sock = optarg;
			break;
		case 'h':
			help();
		default:
			usage_error(NULL);
		}
	}
	if (argc - optind != 1)
		usage_error("check wants one lock name");
	check_name(name = argv[optind]);

	conn = connect_or_exit(sock, "locks check");
	if ((error = locks_list_query(conn, name, LOCKS_LIST_ALL, &list)) !=
	    LOCKS_OK) {
		status = report_query(error, conn);
		locks_close(conn);
		return status;
	}
	/* Waiters and no holder mean someone outside the broker has it. */
	for (i = 0; i < locks_list_count(list); i++) {
		lock = locks_list_lock(list, i);
		if (locks_lock_nholders(lock) + locks_lock_nwaiters(lock) > 0)
			held = 1;
	}
	list_opts_init(&lo);
	if (held && !quiet)
		list_print(list, &lo);
	locks_list_free(list);
	locks_close(conn);
	return held ? EXIT_HELD : 0;
}

/* locks status: show the daemon's version and counters. */
static int
cmd_status(int argc, char **argv, const char *sock)
{
	locks_conn	*conn;
	locks_status	*st;
	char		 uptime[64], *version;
	int		 error, json, status;

	json = parse_view_options(argc, argv, &sock, NULL);
	if (optind < argc)
		usage_error("status takes no arguments");

	conn = connect_or_exit(sock, "locks status");
	if ((error = locks_status_get(conn, &st)) != LOCKS_OK) {
		status = report(error, conn, locks_socket_path(conn));
		locks_close(conn);
		return status;
	}
	if (json)
		printf("%s\n", locks_status_json(st));
	else {
		version = clean(locks_status_version(st), 0);
		format_span(locks_status_uptime(st), 0, uptime, sizeof uptime);
		printf("socket: %s\n", locks_socket_path(conn));
		printf("version: %s\n", version);
		printf("uptime: %s\n", uptime);
		printf("connections: %" PRId64 "\n",
		    locks_status_connections(st));
		printf("locks held: %" PRId64 "\n",
		    locks_status_locks_held(st));
		printf("waiters: %" PRId64 "\n", locks_status_waiters(st));
		printf("acquired total: %" PRId64 "\n",
		    locks_status_acquired_total(st));
		free(version);
	}
	locks_status_free(st);
	locks_close(conn);
	return 0;
}

/* Print the daemon's metrics: Prometheus or OpenMetrics text, or JSON. */
static int
cmd_metrics(int argc, char **argv, const char *sock)
{
	static const struct option longopts[] = {
		{ "json", no_argument, NULL, OPT_JSON },
		{ "openmetrics", no_argument, NULL, OPT_OPENMETRICS },
		{ "socket", required_argument, NULL, OPT_SOCKET },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 }
	};
	enum locks_metrics_format format = LOCKS_METRICS_PROMETHEUS;
	locks_conn	*conn;
	locks_metrics	*m;
	const char	*text;
	int		 ch, error, json = 0, status;

	optind = 0;
	while ((ch = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
		switch (ch) {
		case OPT_JSON:
			json = 1;
			break;
		case OPT_OPENMETRICS:
			format = LOCKS_METRICS_OPENMETRICS;
			break;
		case OPT_SOCKET:
			sock = optarg;
			break;
		case 'h':
			help();
		default:
			usage_error(NULL);
		}
	}
	if (optind < argc)
		usage_error("metrics takes no arguments");
	if (json && format == LOCKS_METRICS_OPENMETRICS)
		usage_error("--json and --openmetrics are two formats: "
		    "give one");
	conn = connect_or_exit(sock, "locks metrics");
	if ((error = locks_metrics_get(conn, &m)) != LOCKS_OK) {
		status = report(error, conn, locks_socket_path(conn));
		locks_close(conn);
		return status;
	}
	if (json)
		printf("%s\n", locks_metrics_json(m));
	else if ((text = locks_metrics_text(m, format)) != NULL)
		fputs(text, stdout);
	else
		die(EX_OSERR, "out of memory");
	locks_metrics_free(m);
	locks_close(conn);
	return 0;
}

/* Parse the global options, then hand the rest to the subcommand. */
int
main(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "socket", required_argument, NULL, OPT_SOCKET },
		{ "help", no_argument, NULL, 'h' },
		{ "version", no_argument, NULL, 'V' },
		{ NULL, 0, NULL, 0 }
	};
	const char	*sock = NULL, *cmd, *base;
	int		 ch, status;

	/* A symlink flock -> locks: flock(1)'s command line, no "run". */
	base = strrchr(argv[0], '/');
	base = base != NULL ? base + 1 : argv[0];
	if (strcmp(base, "flock") == 0) {
		invoked_as_flock = 1;
		status = cmd_run(argc, argv, NULL, 1);
		fflush(stdout);
		return status;
	}
	while ((ch = getopt_long(argc, argv, "+hV", longopts, NULL)) != -1) {
		switch (ch) {
		case OPT_SOCKET:
			sock = optarg;
			break;
		case 'h':
			help();
		case 'V':
			printf("locks %s\n", LOCKS_VERSION);
			return 0;
		default:
			usage_error(NULL);
		}
	}
	if (optind >= argc)
		usage_error("missing command");
	cmd = argv[optind];
	argc -= optind;
	argv += optind;
	/* getopt names argv[0] in its messages: make that "locks". */
	argv[0] = (char *)"locks";

	if (strcmp(cmd, "run") == 0)
		status = cmd_run(argc, argv, sock, 0);
	else if (strcmp(cmd, "hold") == 0)
		status = cmd_hold(argc, argv, sock);
	else if (strcmp(cmd, "check") == 0)
		status = cmd_check(argc, argv, sock);
	else if (strcmp(cmd, "list") == 0)
		status = cmd_list(argc, argv, sock);
	else if (strcmp(cmd, "status") == 0)
		status = cmd_status(argc, argv, sock);
	else if (strcmp(cmd, "metrics") == 0)
		status = cmd_metrics(argc, argv, sock);
	else
		usage_error("unknown command \"%s\"", cmd);
	fflush(stdout);
	if (ferror(stdout))
		die(EX_OSERR, "error writing output");
	return status;
}
