/*
 * The scenarios: each figure is measured once per run, and within a run
 * the systems take turns, starting from a different one each run, so
 * drift on a shared machine hits them all alike.  Ratios are taken
 * within a run, then their median over runs.
 */

#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "bench.h"

const int	 tput_clients[NTPUT] = { 1, 4, 16, 64 };
const int	 cont_clients[NCONT] = { 2, 16, 64 };

#define LOAD_SYSTEMS	((1U << SYS_LOCKS) | (1U << SYS_RAW) | \
			    (1U << SYS_REDIS) | (1U << SYS_ECHO))
#define CONT_SYSTEMS	((1U << SYS_LOCKS) | (1U << SYS_RAW) | \
			    (1U << SYS_REDIS))
#define SCALE_SYSTEMS	((1U << SYS_RAW) | (1U << SYS_REDIS))

/* Fill order with this run's systems among mask, rotated by run. */
static int
run_order(const struct bench *b, unsigned mask, int run, enum sys *order)
{
	enum sys	 all[SYS_COUNT];
	int		 n = 0, i, s;

	for (s = 0; s < SYS_COUNT; s++) {
		if ((mask & (1U << s)) && bench_has(b, (enum sys)s))
			all[n++] = (enum sys)s;
	}
	for (i = 0; i < n; i++)
		order[i] = all[(i + run) % n];
	return n;
}

/* Record num/den as one run's ratio, if both were measured. */
static void
ratio_add(struct figure *f, double num, double den)
{
	if (!isnan(num) && !isnan(den) && den > 0)
		figure_add(f, num / den);
}

static void
rates_reset(double *rates)
{
	int	 s;

	for (s = 0; s < SYS_COUNT; s++)
		rates[s] = NAN;
}

/* The pid of the server behind sys. */
static pid_t
server_pid(const struct bench *b, enum sys sys)
{
	switch (sys) {
	case SYS_LOCKS:
	case SYS_RAW:
		return b->locksd_pid;
	case SYS_REDIS:
		return b->redis.pid > 0 ? b->redis.pid : -1;
	case SYS_ECHO:
		return b->echo.pid > 0 ? b->echo.pid : -1;
	case SYS_COUNT:
		break;
	}
	return -1;
}

/* One load measurement, with its progress line; NaN rate if it failed. */
static void
measure_load(struct bench *b, enum sys sys, int n, int shared, int run,
    struct load_result *res)
{
	memset(res, 0, sizeof *res);
	if (load_run(&b->t, sys, server_pid(b, sys), n, shared, b->o.secs,
	    res) == -1) {
		fprintf(stderr, "  run %d, %d clients, %s: FAILED\n", run + 1,
		    n, sys_name(sys));
		res->rate = res->p50_us = res->p99_us = NAN;
		res->fairness = res->cpu_us = NAN;
		return;
	}
	fprintf(stderr, "  run %d, %d clients%s, %s: %.0f/s, p50 %.1f us, "
	    "p99 %.1f us, server CPU %.1f us/cycle\n", run + 1, n,
	    shared ? " on one name" : "", sys_name(sys), res->rate,
	    res->p50_us, res->p99_us, res->cpu_us);
}

/* Record one measurement into a system's figures. */
static void
load_record(struct load_figs *f, const struct load_result *res)
{
	figure_add(&f->rate, res->rate);
	figure_add(&f->p50, res->p50_us);
	figure_add(&f->p99, res->p99_us);
	figure_add(&f->cpu, res->cpu_us);
	figure_add(&f->fair, res->fairness);
}

/*
 * One run: measure every system of mask once, n clients each, and take
 * the ratios within the run.  With cpu >= 0 the server and the clients
 * are all pinned to that one CPU for the measurement.
 */
static void
load_round(struct bench *b, unsigned mask, int n, int shared, int run,
    int cpu, struct load_figs *figs)
{
	struct load_result	 res;
	enum sys		 order[SYS_COUNT];
	double			 rates[SYS_COUNT];
	int			 k, nsys, s;

	rates_reset(rates);
	nsys = run_order(b, mask, run, order);
	for (k = 0; k < nsys; k++) {
		s = order[k];
		if (cpu >= 0 && (proc_pin(server_pid(b, s), cpu) == -1 ||
		    proc_pin(0, cpu) == -1))
			fprintf(stderr, "locks-bench: cannot pin to CPU %d\n",
			    cpu);
		measure_load(b, order[k], n, shared, run, &res);
		if (cpu >= 0) {
			proc_pin(server_pid(b, s), -1);
			proc_pin(0, -1);
		}
		rates[s] = res.rate;
		load_record(&figs[s], &res);
	}
	for (s = 0; s < SYS_COUNT; s++) {
		ratio_add(&figs[s].vs_redis, rates[s], rates[SYS_REDIS]);
		ratio_add(&figs[s].vs_echo, rates[s], rates[SYS_ECHO]);
	}
}

/*
 * Scenarios 1 and 2.  One client is measured twice: with client and
 * server on one CPU, and placed freely by the scheduler; then 1 to 64
 * clients, each on its own name, placed freely.
 */
void
scenario_throughput(struct bench *b)
{
	int	 i, n, run, one = b->o.scenarios & (1U << 1);
	int	 all = b->o.scenarios & (1U << 2);

	if (one) {
		fprintf(stderr, "one client, client and server on CPU 0:\n");
		for (run = 0; run < b->o.runs; run++)
			load_round(b, LOAD_SYSTEMS, 1, 0, run, 0,
			    b->r.pinned);
	}
	for (i = 0; i < NTPUT; i++) {
		n = tput_clients[i];
		if ((!all && n != 1) || (b->o.clients != 0 &&
		    n != b->o.clients))
			continue;
		fprintf(stderr, "throughput, %d clients:\n", n);
		for (run = 0; run < b->o.runs; run++)
			load_round(b, LOAD_SYSTEMS, n, 0, run, -1,
			    b->r.tput[i]);
	}
	if (one)
		report_single(b);
	if (all)
		report_throughput(b);
}

/* The own-names throughput at n clients, if scenario 2 measured it. */
static const struct figure *
tput_at(const struct bench *b, int n, enum sys sys)
{
	int	 i;

	for (i = 0; i < NTPUT; i++) {
		if (tput_clients[i] == n && b->r.tput[i][sys].rate.n > 0)
			return &b->r.tput[i][sys].rate;
	}
	return NULL;
}

/* Pair run j of one name with run j of own names: the vs_own ratios. */
static void
cont_pair(struct load_figs *cont, int s, const struct figure *own)
{
	struct load_figs	*f = &cont[s];
	int			 j;

	if (own == NULL)
		return;
	for (j = 0; j < f->rate.n && j < own->n; j++)
		ratio_add(&f->vs_own, f->rate.v[j], own->v[j]);
}

/*
 * 16 clients on one name and on their own names, all on CPU 0: what a
 * handoff costs when no wakeup has to reach a halted vCPU.
 */
static void
contention_pinned(struct bench *b)
{
	int	 run, s;

	fprintf(stderr, "contention and own names, 16 clients on CPU 0:\n");
	for (run = 0; run < b->o.runs; run++) {
		load_round(b, CONT_SYSTEMS, 16, 1, run, 0, b->r.cont_pinned);
		load_round(b, CONT_SYSTEMS, 16, 0, run, 0, b->r.own_pinned);
	}
	for (s = 0; s < SYS_COUNT; s++)
		cont_pair(b->r.cont_pinned, s, &b->r.own_pinned[s].rate);
}

/* Scenario 3: 2, 16 and 64 clients on one name. */
void
scenario_contention(struct bench *b)
{
	int			 i, run, s;

	for (i = 0; i < NCONT; i++) {
		if (b->o.clients != 0 && cont_clients[i] != b->o.clients)
			continue;
		fprintf(stderr, "contention, %d clients on one name:\n",
		    cont_clients[i]);
		for (run = 0; run < b->o.runs; run++)
			load_round(b, CONT_SYSTEMS, cont_clients[i], 1, run, -1,
			    b->r.cont[i]);
		/* Pair run j here with run j of scenario 2. */
		for (s = 0; s < SYS_COUNT; s++)
			cont_pair(b->r.cont[i], s,
			    tput_at(b, cont_clients[i], s));
	}
	if (b->o.clients == 0 || b->o.clients == 16)
		contention_pinned(b);
	report_contention(b);
}

/* Restart the server of sys, so its RSS starts from a fresh process. */
static pid_t
scale_fresh(struct bench *b, enum sys sys)
{
	if (sys == SYS_REDIS) {
		if (bench_restart_redis(b) == -1)
			errx_bench(b, "cannot restart redis-server");
		return b->redis.pid > 0 ? b->redis.pid : -1;
	}
	if (bench_restart_locksd(b) == -1)
		errx_bench(b, "cannot restart locksd");
	return b->locksd_pid;
}

/* One run of scenario 4's first half at client count i. */
static void
scale_run(struct bench *b, int i, int run)
{
	struct results		*r = &b->r;
	struct scale_result	 res;
	enum sys		 order[SYS_COUNT];
	int			 k, n, c = b->o.scale[i];
	pid_t			 pid;

	n = run_order(b, SCALE_SYSTEMS, run, order);
	for (k = 0; k < n; k++) {
		pid = scale_fresh(b, order[k]);
		memset(&res, 0, sizeof res);
		if (scale_hold(&b->t, order[k], pid, c, &res) == -1) {
			fprintf(stderr, "  run %d, %d held, %s: FAILED\n",
			    run + 1, c, sys_name(order[k]));
			continue;
		}
		fprintf(stderr, "  run %d, %d held, %s: %.2f KiB/client, "
		    "all in %.1f ms, extra p50 %.1f us\n", run + 1, c,
		    sys_name(order[k]), res.rss_kib, res.all_in_ms,
		    res.p50_us);
		figure_add(&r->rss[i][order[k]], res.rss_kib);
		figure_add(&r->all_in[i][order[k]], res.all_in_ms);
		figure_add(&r->extra_p50[i][order[k]], res.p50_us);
		figure_add(&r->extra_p99[i][order[k]], res.p99_us);
	}
}

/*
 * Create the scale scenario's lock files up front, as a long-lived daemon
 * would find them (lock files are never unlinked), so the first run does
 * not pay for creating them and the others not.
 */
static void
scale_lock_files(const struct bench *b)
{
	char	 path[4300];
	int	 i, n = 0, fd;

	if (b->o.locks_socket != NULL)
		return;
	for (i = 0; i < b->o.nscale; i++)
		n = b->o.scale[i] > n ? b->o.scale[i] : n;
	for (i = -1; i < n; i++) {
		if (i < 0)
			snprintf(path, sizeof path, "%s/locksd/locks/"
			    "scale-extra", b->dir);
		else
			snprintf(path, sizeof path, "%s/locksd/locks/"
			    "scale-%d", b->dir, i);
		if ((fd = open(path, O_RDONLY | O_CREAT | O_CLOEXEC,
		    0644)) != -1)
			close(fd);
	}
}

/* Scenario 4: thousands of clients each holding its own name. */
void
scenario_scale(struct bench *b)
{
	int	 i, run;

	scale_lock_files(b);
	for (i = 0; i < b->o.nscale; i++) {
		if (!scale_fd_room(b->o.scale[i])) {
			fprintf(stderr, "locks-bench: not enough descriptors "
			    "for %d clients; skipped\n", b->o.scale[i]);
			continue;
		}
		fprintf(stderr, "scale, %d clients holding:\n",
		    b->o.scale[i]);
		for (run = 0; run < b->o.runs; run++)
			scale_run(b, i, run);
	}
	report_scale(b);
}

/* Scenario 4, second half: one name, thousands of waiters draining. */
void
scenario_queue(struct bench *b)
{
	struct results		*r = &b->r;
	struct queue_result	 q;
	double			 lo, hi;
	int			 run, k;

	if (!scale_fd_room(b->o.waiters)) {
		fprintf(stderr, "locks-bench: not enough descriptors for %d "
		    "waiters; skipped\n", b->o.waiters);
		return;
	}
	fprintf(stderr, "one name, %d waiters:\n", b->o.waiters);
	for (run = 0; run < b->o.runs; run++) {
		if (bench_restart_locksd(b) == -1)
			errx_bench(b, "cannot restart locksd");
		memset(&q, 0, sizeof q);
		if (scale_queue(&b->t, b->locksd_pid, b->o.waiters,
		    &q) == -1) {
			fprintf(stderr, "  run %d: FAILED\n", run + 1);
			continue;
		}
		lo = hi = q.rate[0];
		for (k = 0; k < QUEUE_BUCKETS; k++) {
			figure_add(&r->q_rate[k], q.rate[k]);
			lo = fmin(lo, q.rate[k]);
			hi = fmax(hi, q.rate[k]);
		}
		figure_add(&r->q_enqueue, q.enqueue_ms);
		figure_add(&r->q_total, q.total_rate);
		fprintf(stderr, "  run %d: queued in %.0f ms, drained at "
		    "%.0f/s, slowest/fastest bucket %.2f\n", run + 1,
		    q.enqueue_ms, q.total_rate, lo / hi);
	}
	report_queue(b);
}

/* Scenario 5: the locks CLI against flock(1). */
void
scenario_cli(struct bench *b)
{
	struct results		*r = &b->r;
	struct cli_result	 c;
	int			 run;

	if (b->o.locks_cli == NULL) {
		fprintf(stderr, "locks-bench: no --locks; scenario 5 "
		    "skipped\n");
		return;
	}
	fprintf(stderr, "CLI, %d runs of each command:\n", b->o.cli_runs);
	for (run = 0; run < b->o.runs; run++) {
		if (cli_run(b->o.locks_cli, b->t.path[SYS_LOCKS], b->dir,
		    b->o.cli_runs, &c) == -1) {
			fprintf(stderr, "  run %d: FAILED\n", run + 1);
			continue;
		}
		figure_add(&r->cli_locks, c.locks_ms);
		figure_add(&r->cli_flock, c.flock_ms);
		ratio_add(&r->cli_ratio, c.locks_ms, c.flock_ms);
		fprintf(stderr, "  run %d: locks run %.2f ms, flock %.2f ms\n",
		    run + 1, c.locks_ms, c.flock_ms);
	}
	report_cli(b);
}
