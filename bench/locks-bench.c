/*
 * locks-bench: measure locksd side by side with Redis and with the limit
 * of a Unix socket (a bare line-echo server), alternating the systems
 * within each run, and print the medians and spreads as Markdown tables.
 * Progress goes to stderr, the tables to stdout.  See bench/run.
 */

#include <sys/stat.h>

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <getopt.h>
#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bench.h"

/* Remove one entry of the private directory. */
static int
rm_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
	(void)sb;
	(void)flag;
	(void)ftw;
	return remove(path) == -1 && errno != ENOENT ? -1 : 0;
}

/* Stop every server we started and remove the private directory. */
static void
bench_cleanup(struct bench *b)
{
	server_stop(&b->locksd);
	server_stop(&b->redis);
	server_stop(&b->echo);
	if (b->dir[0] != '\0')
		nftw(b->dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

/* SIGINT or SIGTERM: take the servers down with us. */
static void
on_signal(int sig)
{
	spawn_kill_all();
	signal(sig, SIG_DFL);
	raise(sig);
}

static void
usage(FILE *out)
{
	fprintf(out,
	    "usage: locks-bench --locksd PATH --locks PATH [--redis-server PATH]\n"
	    "                   [--locks-socket PATH] [--redis-socket PATH]\n"
	    "                   [--echo-socket PATH] [--quick] [--runs N] "
	    "[--secs S]\n"
	    "                   [--scenarios LIST] [--systems LIST] "
	    "[--scale LIST]\n"
	    "                   [--waiters N] [--cli-runs N]\n"
	    "       locks-bench --echo-server PATH\n"
	    "\n"
	    "  --locksd PATH        the locksd to start (a private one per "
	    "run)\n"
	    "  --locks PATH         the locks CLI, for scenario 5\n"
	    "  --redis-server PATH  compare with a private redis-server\n"
	    "  --locks-socket PATH  use a running locksd instead (to profile "
	    "it)\n"
	    "  --redis-socket PATH  use a running Redis instead\n"
	    "  --echo-socket PATH   use a running echo server instead\n"
	    "  --quick              3 short runs, for a smoke test\n"
	    "  --runs N             runs per figure (default 5; at least 3)\n"
	    "  --secs S             seconds per load measurement (default 2)\n"
	    "  --scenarios LIST     of 1,2,3,4,5,6 (default all)\n"
	    "  --systems LIST       of locks,raw,redis,echo (default all)\n"
	    "  --scale LIST         client counts of scenario 4 (default "
	    "1000,9000)\n"
	    "  --waiters N          waiters on one name in scenario 4 "
	    "(default 9000)\n"
	    "  --cli-runs N         runs of each command in scenario 5 "
	    "(default 200)\n"
	    "  --clients N          only N clients in scenarios 2 and 3 (to "
	    "profile)\n"
	    "  --echo-server PATH   serve the echo limit on PATH (internal)\n");
}

/* Parse a count, or exit with a usage error. */
static int
parse_int(const char *text, int lo, int hi)
{
	char	*end;
	long	 v;

	errno = 0;
	v = strtol(text, &end, 10);
	if (errno != 0 || end == text || *end != '\0' || v < lo || v > hi) {
		fprintf(stderr, "locks-bench: not a number from %d to %d: %s\n",
		    lo, hi, text);
		exit(2);
	}
	return (int)v;
}

/* Parse a comma list of scenario numbers into a bit set. */
static unsigned
parse_scenarios(const char *text)
{
	char		 buf[256], *tok, *save;
	unsigned	 set = 0;

	snprintf(buf, sizeof buf, "%s", text);
	for (tok = strtok_r(buf, ",", &save); tok != NULL;
	    tok = strtok_r(NULL, ",", &save))
		set |= 1U << parse_int(tok, 1, 6);
	return set;
}

/* Parse a comma list of system names into a bit set. */
static unsigned
parse_systems(const char *text)
{
	static const char	*names[SYS_COUNT] = { "locks", "raw", "redis",
				    "echo" };
	char			 buf[256], *tok, *save;
	unsigned		 set = 0;
	int			 s;

	snprintf(buf, sizeof buf, "%s", text);
	for (tok = strtok_r(buf, ",", &save); tok != NULL;
	    tok = strtok_r(NULL, ",", &save)) {
		for (s = 0; s < SYS_COUNT && strcmp(tok, names[s]) != 0; s++)
			;
		if (s == SYS_COUNT) {
			fprintf(stderr, "locks-bench: unknown system %s\n",
			    tok);
			exit(2);
		}
		set |= 1U << s;
	}
	return set;
}

/* Parse the client counts of the scale scenario. */
static void
parse_scale(const char *text, struct opts *o)
{
	char	 buf[256], *tok, *save;

	snprintf(buf, sizeof buf, "%s", text);
	o->nscale = 0;
	for (tok = strtok_r(buf, ",", &save); tok != NULL &&
	    o->nscale < MAX_SCALE; tok = strtok_r(NULL, ",", &save))
		o->scale[o->nscale++] = parse_int(tok, 1, 1000000);
}

static void
parse_options(int argc, char **argv, struct opts *o)
{
	static const struct option longopts[] = {
		{ "locksd", required_argument, NULL, 'd' },
		{ "locks", required_argument, NULL, 'l' },
		{ "redis-server", required_argument, NULL, 'r' },
		{ "locks-socket", required_argument, NULL, 'S' },
		{ "redis-socket", required_argument, NULL, 'R' },
		{ "echo-socket", required_argument, NULL, 'E' },
		{ "quick", no_argument, NULL, 'q' },
		{ "runs", required_argument, NULL, 'n' },
		{ "secs", required_argument, NULL, 't' },
		{ "scenarios", required_argument, NULL, 'c' },
		{ "systems", required_argument, NULL, 'y' },
		{ "scale", required_argument, NULL, 'C' },
		{ "waiters", required_argument, NULL, 'w' },
		{ "cli-runs", required_argument, NULL, 'i' },
		{ "clients", required_argument, NULL, 'N' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 }
	};
	int	 ch;

	while ((ch = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
		switch (ch) {
		case 'd':
			o->locksd = optarg;
			break;
		case 'l':
			o->locks_cli = optarg;
			break;
		case 'r':
			o->redis = optarg;
			break;
		case 'S':
			o->locks_socket = optarg;
			break;
		case 'R':
			o->redis_socket = optarg;
			break;
		case 'E':
			o->echo_socket = optarg;
			break;
		case 'q':
			o->quick = 1;
			o->runs = 3;
			o->secs = 0.5;
			o->cli_runs = 30;
			break;
		case 'n':
			o->runs = parse_int(optarg, 1, BENCH_MAX_RUNS);
			break;
		case 't':
			o->secs = parse_int(optarg, 1, 3600);
			break;
		case 'c':
			o->scenarios = parse_scenarios(optarg);
			break;
		case 'y':
			o->systems = parse_systems(optarg);
			break;
		case 'C':
			parse_scale(optarg, o);
			break;
		case 'w':
			o->waiters = parse_int(optarg, QUEUE_BUCKETS, 1000000);
			break;
		case 'i':
			o->cli_runs = parse_int(optarg, 1, 100000);
			break;
		case 'N':
			o->clients = parse_int(optarg, 1, 64);
			break;
		case 'h':
			usage(stdout);
			exit(0);
		default:
			usage(stderr);
			exit(2);
		}
	}
	if (optind != argc || (o->locksd == NULL && o->locks_socket == NULL)) {
		usage(stderr);
		exit(2);
	}
}

/* The pid of a running locksd, from its hello reply. */
static pid_t
locksd_pid(const char *path)
{
	static const char	 hello[] = "{\"id\":1,\"op\":\"hello\"}\n";
	struct wire		*w;
	const char		*line, *p;
	size_t			 len;
	pid_t			 pid = -1;

	if (wire_connect(path, &w) == -1)
		return -1;
	if (wire_write(w, hello, sizeof hello - 1) == 0 &&
	    wire_read_line(w, &line, &len) == 0 &&
	    (p = memmem(line, len, "\"pid\":", 6)) != NULL)
		pid = (pid_t)strtol(p + 6, NULL, 10);
	wire_close(w);
	return pid;
}

/* (Re)start our locksd, so a scale run starts from a fresh daemon. */
int
bench_restart_locksd(struct bench *b)
{
	char	 dir[4200];

	if (b->o.locks_socket != NULL)
		return 0;
	server_stop(&b->locksd);
	snprintf(dir, sizeof dir, "%s/locksd", b->dir);
	if (spawn_locksd(b->o.locksd, dir, &b->locksd) == -1)
		return -1;
	b->locksd_pid = b->locksd.pid;
	return 0;
}

/* (Re)start our redis-server, empty. */
int
bench_restart_redis(struct bench *b)
{
	char	 dir[4200];

	if (b->o.redis_socket != NULL)
		return 0;
	server_stop(&b->redis);
	snprintf(dir, sizeof dir, "%s/redis", b->dir);
	return spawn_redis(b->o.redis, dir, &b->redis);
}

/* Start the servers of the systems chosen, and fill in the target. */
static void
bench_start(struct bench *b)
{
	char	 dir[4200];

	if (b->o.locks_socket != NULL) {
		b->t.path[SYS_LOCKS] = b->t.path[SYS_RAW] = b->o.locks_socket;
		if ((b->locksd_pid = locksd_pid(b->o.locks_socket)) <= 0)
			errx_bench(b, "no locksd answers on %s",
			    b->o.locks_socket);
	} else {
		if (bench_restart_locksd(b) == -1)
			errx_bench(b, "cannot start %s", b->o.locksd);
		b->t.path[SYS_LOCKS] = b->t.path[SYS_RAW] = b->locksd.path;
	}
	if (b->o.redis_socket != NULL)
		b->t.path[SYS_REDIS] = b->o.redis_socket;
	else if (b->o.redis != NULL && (b->o.systems & (1U << SYS_REDIS))) {
		if (bench_restart_redis(b) == -1)
			errx_bench(b, "cannot start %s", b->o.redis);
		b->t.path[SYS_REDIS] = b->redis.path;
	}
	if (b->o.echo_socket != NULL)
		b->t.path[SYS_ECHO] = b->o.echo_socket;
	else if (b->o.systems & (1U << SYS_ECHO)) {
		snprintf(dir, sizeof dir, "%s/echo", b->dir);
		if (spawn_echo(dir, &b->echo) == -1)
			errx_bench(b, "cannot start the echo server");
		b->t.path[SYS_ECHO] = b->echo.path;
	}
}

/* Exit with a message, stopping the servers first. */
void
errx_bench(struct bench *b, const char *fmt, ...)
{
	va_list	 ap;

	fprintf(stderr, "locks-bench: ");
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fprintf(stderr, "\n");
	bench_cleanup(b);
	exit(1);
}

/* Whether sys takes part: chosen, and its server is running. */
int
bench_has(const struct bench *b, enum sys sys)
{
	return (b->o.systems & (1U << sys)) && b->t.path[sys] != NULL;
}

int
main(int argc, char **argv)
{
	static struct bench	 b;
	char			 tmpl[] = "/tmp/locks-bench.XXXXXX";

	if (argc == 3 && strcmp(argv[1], "--echo-server") == 0)
		return echo_main(argv[2]);
	b.o.runs = 5;
	b.o.secs = 2;
	b.o.cli_runs = 200;
	b.o.waiters = 9000;
	b.o.scale[0] = 1000;
	b.o.scale[1] = 9000;
	b.o.nscale = 2;
	b.o.scenarios = 0x7e;
	b.o.systems = (1U << SYS_COUNT) - 1;
	parse_options(argc, argv, &b.o);
	if (b.o.runs < 3)
		fprintf(stderr, "locks-bench: fewer than 3 runs: the spreads "
		    "mean little\n");

	signal(SIGPIPE, SIG_IGN);
	signal(SIGINT, on_signal);
	signal(SIGTERM, on_signal);
	/* Thousands of connections, here and in the daemon we start. */
	scale_fd_room(0);
	if (mkdtemp(tmpl) == NULL) {
		perror("mkdtemp");
		return 1;
	}
	snprintf(b.dir, sizeof b.dir, "%s", tmpl);
	bench_start(&b);

	report_intro(&b);
	if (b.o.scenarios & ((1U << 1) | (1U << 2)))
		scenario_throughput(&b);
	if (b.o.scenarios & (1U << 3))
		scenario_contention(&b);
	if (b.o.scenarios & (1U << 4)) {
		scenario_scale(&b);
		scenario_queue(&b);
	}
	if (b.o.scenarios & (1U << 5))
		scenario_cli(&b);
	if (b.o.scenarios & (1U << 6))
		scenario_paths(&b);
	report_targets(&b);
	bench_cleanup(&b);
	return 0;
}
