/*
 * locks-handover-bench: how long clients wait while locksd hands itself
 * over, with many held locks.  N locks are held on C connections (one
 * each by default; a descriptor limit may need fewer); a probe
 * connection pings without pause, from a thread, and the gap is the
 * longest time between two of its replies across the handover: the old
 * instance's last reply to the new one's first.  Both ways are measured:
 * a reload (SIGHUP, exec in place) and a restart through a test double of
 * systemd's descriptor store (tests/fdstore.c; the real one is PID 1's,
 * which CI does not have).  After each handover every lock must still be
 * held.  Markdown on stdout, for BENCHMARKS.md.
 *
 *   locks-handover-bench [--locks N] [--conns C] [--runs R] [--reload-only]
 */

#include <sys/resource.h>
#include <sys/socket.h>

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fdstore.h"
#include "harness.h"

#define MAX_RUNS	20

struct probe {
	int		 fd;
	atomic_int	 stop;
	double		 gap;		/* the longest, seconds */
	double		 gap_at;	/* when it ended */
	long		 replies;
};

/* Read one line from a blocking socket into buf; -1 at EOF or error. */
static int
read_line(int fd, char *buf, size_t size)
{
	size_t	 n = 0;
	ssize_t	 r;

	while (n + 1 < size) {
		if ((r = read(fd, buf + n, 1)) <= 0)
			return -1;
		if (buf[n++] == '\n')
			break;
	}
	buf[n] = '\0';
	return 0;
}

/* Send a line and read the reply line; -1 if the connection failed. */
static int
round_trip(int fd, const char *line, char *buf, size_t size)
{
	size_t	 len = strlen(line);

	if (write(fd, line, len) != (ssize_t)len)
		return -1;
	return read_line(fd, buf, size);
}

/* The probe thread: ping, ping, ping, keeping the longest silence. */
static void *
probe_main(void *arg)
{
	struct probe	*p = arg;
	char		 buf[256];
	double		 last = h_now(), now;

	while (!atomic_load(&p->stop)) {
		if (round_trip(p->fd, "{\"op\":\"ping\",\"id\":1}\n", buf,
		    sizeof buf) == -1 || strstr(buf, "\"ok\":true") == NULL) {
			fprintf(stderr, "probe: lost the daemon: %s\n", buf);
			break;
		}
		now = h_now();
		if (now - last > p->gap) {
			p->gap = now - last;
			p->gap_at = now;
		}
		last = now;
		p->replies++;
	}
	return NULL;
}

/* Open nconns connections holding nlocks locks hb-<i>, round robin. */
static int
hold_locks(const struct h_daemon *d, int *fds, int nconns, int nlocks)
{
	char	 line[128], buf[512];
	int	 i;

	for (i = 0; i < nconns; i++)
		if ((fds[i] = h_unix_connect(d->socket_path)) == -1)
			return -1;
	for (i = 0; i < nlocks; i++) {
		snprintf(line, sizeof line, "{\"op\":\"acquire\",\"id\":%d,"
		    "\"name\":\"hb-%d\",\"timeout\":0}\n", i, i);
		if (write(fds[i % nconns], line, strlen(line)) !=
		    (ssize_t)strlen(line))
			return -1;
	}
	for (i = 0; i < nlocks; i++) {
		if (read_line(fds[i % nconns], buf, sizeof buf) == -1 ||
		    strstr(buf, "\"token\"") == NULL) {
			fprintf(stderr, "acquire %d: %s\n", i, buf);
			return -1;
		}
	}
	return 0;
}

/* How many locks the daemon says are held, on a new connection. */
static long
daemon_locks_held(const struct h_daemon *d)
{
	char	 buf[1024], *p;
	int	 fd = h_unix_connect(d->socket_path);
	long	 n = -1;

	if (fd != -1 && round_trip(fd, "{\"op\":\"status\",\"id\":2}\n", buf,
	    sizeof buf) == 0 && (p = strstr(buf, "\"locks_held\":")) != NULL)
		n = strtol(p + strlen("\"locks_held\":"), NULL, 10);
	if (fd != -1)
		close(fd);
	return n;
}

/* How many times the daemon's log says it restored. */
static int
restores(const struct h_daemon *d)
{
	static char	 buf[1 << 20];
	char		*p;
	int		 n = 0;

	if (h_slurp(d->log_path, buf, sizeof buf) < 0)
		return 0;
	for (p = buf; (p = strstr(p, "locksd: restored ")) != NULL; p++)
		n++;
	return n;
}

/*
 * One handover, while the probe runs: returns the gap in seconds, or -1.
 * With store NULL it is a reload, else a restart through the store.
 */
static double
handover(struct h_daemon *d, struct fdstore *store, int *done, int nlocks)
{
	struct probe	 p = { 0 };
	pthread_t	 t;
	double		 deadline;
	long		 held;

	if ((p.fd = h_unix_connect(d->socket_path)) == -1 ||
	    pthread_create(&t, NULL, probe_main, &p) != 0)
		return -1;
	h_sleep(0.3);
	p.gap = 0;		/* what came before is no handover */
	(*done)++;
	if (store == NULL)
		kill(d->pid, SIGHUP);
	else if (fdstore_restart(store, d) == -1) {
		fprintf(stderr, "restart: %s\n", store->error);
		return -1;
	}
	deadline = h_now() + 60;
	while (restores(d) < *done || (store != NULL &&
	    (fdstore_drain(store), fdstore_count(store, NULL) > 0))) {
		if (h_now() > deadline)
			return -1;
		h_sleep(0.005);
	}
	h_sleep(0.3);
	atomic_store(&p.stop, 1);
	pthread_join(t, NULL);
	close(p.fd);
	if ((held = daemon_locks_held(d)) != nlocks) {
		fprintf(stderr, "after the handover %ld locks are held, not "
		    "%d\n", held, nlocks);
		return -1;
	}
	return p.gap;
}

static int
dbl_cmp(const void *a, const void *b)
{
	double	 x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

/* One Markdown row: median and worst of runs gaps, in ms. */
static void
report(const char *what, double *gaps, int runs, int nlocks, int nconns)
{
	qsort(gaps, runs, sizeof *gaps, dbl_cmp);
	printf("| %s | %d | %d | %d | %.1f | %.1f |\n", what, nlocks,
	    nconns, runs, gaps[runs / 2] * 1e3, gaps[runs - 1] * 1e3);
}

/*
 * Raise the descriptor limit to need: ours holds the connections and, for
 * a restart, the store's copies; the daemon's, its connections and lock
 * files.
 */
static int
raise_nofile(long need)
{
	struct rlimit	 rl;

	/* All we may have: the store's double needs room to move fds. */
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_max >=
	    (rlim_t)need + 1024) {
		rl.rlim_cur = rl.rlim_max;
		return setrlimit(RLIMIT_NOFILE, &rl);
	}
	rl.rlim_cur = rl.rlim_max = (rlim_t)need + 1024;
	if (setrlimit(RLIMIT_NOFILE, &rl) == 0)
		return 0;
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_max >=
	    (rlim_t)need) {
		rl.rlim_cur = rl.rlim_max;
		return setrlimit(RLIMIT_NOFILE, &rl);
	}
	fprintf(stderr, "locks-handover-bench: this needs %ld descriptors and "
	    "the hard RLIMIT_NOFILE is %ld; use fewer --conns, or raise it "
	    "(CAP_SYS_RESOURCE)\n", need, (long)rl.rlim_max);
	return -1;
}

/* Run both ways (or the reload alone), runs times each. */
static int
bench(int nlocks, int nconns, int runs, int reload_only)
{
	struct h_daemon	 d;
	struct fdstore	 store;
	double		 reload[MAX_RUNS], restart[MAX_RUNS];
	int		*fds, done = 0, i;
	char		 dir[128];

	memset(&d, 0, sizeof d);
	d.extra[0] = "--max-clients=1000000";
	d.extra[1] = "--max-clients-per-uid=1000000";
	if ((fds = calloc(nconns, sizeof *fds)) == NULL ||
	    h_init() == -1)
		return -1;
	snprintf(dir, sizeof dir, "%s/store-XXXXXX", h_run_dir());
	if (mkdtemp(dir) == NULL || fdstore_open(&store, dir) == -1 ||
	    h_daemon_start(&d) == -1) {
		fprintf(stderr, "start: %s\n", h_error());
		return -1;
	}
	if (reload_only)
		fdstore_close(&store);	/* no NOTIFY_SOCKET: SIGTERM stops */
	if (hold_locks(&d, fds, nconns, nlocks) == -1)
		return -1;
	for (i = 0; i < runs; i++) {
		fprintf(stderr, "run %d/%d\n", i + 1, runs);
		if ((reload[i] = handover(&d, NULL, &done, nlocks)) < 0 ||
		    (!reload_only && (restart[i] = handover(&d, &store, &done,
		    nlocks)) < 0)) {
			h_daemon_dump_log(&d);
			return -1;
		}
	}
	report("reload (SIGHUP, exec in place)", reload, runs, nlocks,
	    nconns);
	if (!reload_only)
		report("restart (descriptor store double)", restart, runs,
		    nlocks, nconns);
	if (getenv("LOCKS_BENCH_LOG") != NULL)
		h_daemon_dump_log(&d);
	fdstore_close(&store);
	h_daemon_stop(&d);
	for (i = 0; i < nconns; i++)
		close(fds[i]);
	free(fds);
	h_finish(0);
	return 0;
}

int
main(int argc, char **argv)
{
	int	 nlocks = 10000, nconns = 0, runs = 5, reload_only = 0, i;

	for (i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--locks") == 0 && i + 1 < argc)
			nlocks = atoi(argv[++i]);
		else if (strcmp(argv[i], "--conns") == 0 && i + 1 < argc)
			nconns = atoi(argv[++i]);
		else if (strcmp(argv[i], "--reload-only") == 0)
			reload_only = 1;
		else if (strcmp(argv[i], "--header") == 0) {
			printf("| handover | held locks | connections | runs | "
			    "median gap, ms | worst gap, ms |\n"
			    "|---|---|---|---|---|---|\n");
			return 0;
		}
		else if (strcmp(argv[i], "--runs") == 0 && i + 1 < argc)
			runs = atoi(argv[++i]);
		else {
			fprintf(stderr, "usage: locks-handover-bench "
			    "[--locks N] [--conns C] [--runs R] "
			    "[--reload-only] | --header\n");
			return 2;
		}
	}
	if (nconns == 0)
		nconns = nlocks;
	if (nlocks < 1 || nconns < 1 || nconns > nlocks || runs < 1 ||
	    runs > MAX_RUNS) {
		fprintf(stderr, "locks-handover-bench: --locks from 1, --runs "
		    "from 1 to %d\n", MAX_RUNS);
		return 2;
	}
	signal(SIGPIPE, SIG_IGN);
	/* The daemon's (it inherits ours), and ours with the store's. */
	if (raise_nofile((long)nconns + nlocks + 64 > (long)nconns * 2 +
	    (reload_only ? 0 : nlocks) + 64 ? (long)nconns + nlocks + 64 :
	    (long)nconns * 2 + (reload_only ? 0 : nlocks) + 64) == -1)
		return 1;
	return bench(nlocks, nconns, runs, reload_only) == 0 ? 0 : 1;
}
