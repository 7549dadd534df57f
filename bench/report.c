/*
 * The Markdown tables, printed to stdout as each scenario ends, and the
 * issue's targets with met or not met; ready to paste into BENCHMARKS.md.
 */

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "bench.h"

#define FIG_BUFS	16	/* formatted figures alive at once */

/* Format a figure into one of a ring of buffers, for one printf. */
static const char *
fig(const struct figure *f, int prec)
{
	static char	 bufs[FIG_BUFS][96];
	static int	 next;

	next = (next + 1) % FIG_BUFS;
	return figure_fmt(f, prec, bufs[next], sizeof bufs[next]);
}

/* How each figure was made. */
void
report_intro(const struct bench *b)
{
	printf("Each figure is the median of %d runs, with the (min–max) "
	    "over the runs.\nA load measurement lasts %g s.  Within a run "
	    "the systems take turns, starting\nfrom a different one each "
	    "run; a ratio is taken within each run, then its\nmedian is "
	    "shown.%s\n\n", b->o.runs, b->o.secs, b->o.quick ?
	    "  (--quick: short runs, a smoke test only.)" : "");
	printf("- **locksd (liblocks)**: the shipped client library, one "
	    "connection per thread.\n"
	    "- **locksd (raw lines)**: the same bytes liblocks sends, from a "
	    "minimal client\n  (no json-c on the client side): the daemon's "
	    "own cost.\n"
	    "- **Redis**: a private `redis-server` on a Unix socket, `SET "
	    "name token NX PX 30000`\n  then `DEL name`, from a minimal RESP "
	    "client.%s\n"
	    "- **echo limit**: a single-threaded epoll server that answers "
	    "each line with a\n  fixed reply; the client sends the two lines "
	    "of a lock cycle and reads two replies.\n\n",
	    b->t.path[SYS_REDIS] == NULL ? "  *Not run: redis-server not "
	    "found.*" : "");
	fflush(stdout);
}

/* One row of scenario 1's table. */
static void
single_row(const char *placement, enum sys s, const struct load_figs *f)
{
	if (f->rate.n == 0)
		return;
	printf("| %s | %s | %s | %s | %s | %s | %s | %s |\n", placement,
	    sys_name(s), fig(&f->rate, 0), fig(&f->p50, 1), fig(&f->p99, 1),
	    fig(&f->cpu, 1), s == SYS_REDIS ? "1" : fig(&f->vs_redis, 2),
	    s == SYS_ECHO ? "1" : fig(&f->vs_echo, 2));
}

/* Scenario 1. */
void
report_single(const struct bench *b)
{
	const struct results	*r = &b->r;
	int			 s;

	printf("### 1. One client, uncontended: acquire+release on one "
	    "name\n\n");
	printf("*one CPU*: the client thread and the server pinned to CPU 0, "
	    "so a cycle costs\nwhat both sides compute plus four context "
	    "switches; steady from run to run.\n*free*: placed by the "
	    "scheduler.  On a VM whose idle vCPUs halt, a round trip\nto a "
	    "halted vCPU costs tens of µs more, so *free* swings between "
	    "runs.\nServer CPU is the server's time on a CPU per cycle "
	    "(/proc/PID/task/*/schedstat).\n\n");
	printf("| placement | system | cycles/s | p50 µs | p99 µs | server "
	    "CPU µs/cycle | vs Redis | vs echo limit |\n"
	    "|---|---|---|---|---|---|---|---|\n");
	for (s = 0; s < SYS_COUNT; s++)
		single_row("one CPU", (enum sys)s, &r->pinned[s]);
	for (s = 0; s < SYS_COUNT; s++)
		single_row("free", (enum sys)s, &r->tput[0][s]);
	printf("\n");
	fflush(stdout);
}

/* Scenario 2. */
void
report_throughput(const struct bench *b)
{
	const struct load_figs	*f;
	int			 i;

	printf("### 2. Throughput: N clients, each cycling its own name "
	    "(cycles/s)\n\n");
	printf("| N | locksd (liblocks) | locksd (raw) | Redis | echo limit "
	    "| liblocks/Redis | liblocks/limit | raw/Redis | raw/limit |\n"
	    "|---|---|---|---|---|---|---|---|---|\n");
	for (i = 0; i < NTPUT; i++) {
		f = b->r.tput[i];
		printf("| %d | %s | %s | %s | %s | %s | %s | %s | %s |\n",
		    tput_clients[i], fig(&f[SYS_LOCKS].rate, 0),
		    fig(&f[SYS_RAW].rate, 0), fig(&f[SYS_REDIS].rate, 0),
		    fig(&f[SYS_ECHO].rate, 0), fig(&f[SYS_LOCKS].vs_redis, 2),
		    fig(&f[SYS_LOCKS].vs_echo, 2),
		    fig(&f[SYS_RAW].vs_redis, 2), fig(&f[SYS_RAW].vs_echo, 2));
	}
	printf("\nServer CPU µs per cycle, and p99 cycle latency µs:\n\n");
	printf("| N | CPU locksd (liblocks) | CPU locksd (raw) | CPU Redis | "
	    "CPU echo | p99 liblocks | p99 raw | p99 Redis | p99 echo |\n"
	    "|---|---|---|---|---|---|---|---|---|\n");
	for (i = 0; i < NTPUT; i++) {
		f = b->r.tput[i];
		printf("| %d | %s | %s | %s | %s | %s | %s | %s | %s |\n",
		    tput_clients[i], fig(&f[SYS_LOCKS].cpu, 1),
		    fig(&f[SYS_RAW].cpu, 1), fig(&f[SYS_REDIS].cpu, 1),
		    fig(&f[SYS_ECHO].cpu, 1), fig(&f[SYS_LOCKS].p99, 0),
		    fig(&f[SYS_RAW].p99, 0), fig(&f[SYS_REDIS].p99, 0),
		    fig(&f[SYS_ECHO].p99, 0));
	}
	printf("\n");
	fflush(stdout);
}

/* Scenario 3. */
/*
 * Scenario 3 again with the 16 clients and the server on one CPU, next
 * to 16 own names on one CPU.
 */
static void
report_contention_pinned(const struct bench *b)
{
	const struct load_figs	*f, *own;
	int			 s;

	if (b->r.cont_pinned[SYS_LOCKS].rate.n == 0 &&
	    b->r.cont_pinned[SYS_RAW].rate.n == 0)
		return;
	printf("*One CPU*: the same 16 clients and the server pinned to CPU "
	    "0, next to\n16 clients on their own names pinned alike.  No "
	    "handoff then waits for\na halted vCPU to wake (see *This "
	    "machine*).\n\n");
	printf("| N, one CPU | system | handoffs/s | own names cycles/s | "
	    "p99 wait µs | fairness max/min | vs Redis | vs own names |\n"
	    "|---|---|---|---|---|---|---|---|\n");
	for (s = 0; s < SYS_COUNT; s++) {
		f = &b->r.cont_pinned[s];
		own = &b->r.own_pinned[s];
		if (f->rate.n == 0)
			continue;
		printf("| 16 | %s | %s | %s | %s | %s | %s | %s |\n",
		    sys_name((enum sys)s), fig(&f->rate, 0),
		    fig(&own->rate, 0), fig(&f->p99, 0), fig(&f->fair, 2),
		    s == SYS_REDIS ? "1" : fig(&f->vs_redis, 2),
		    fig(&f->vs_own, 2));
	}
	printf("\n");
}

void
report_contention(const struct bench *b)
{
	const struct load_figs	*f;
	int			 i, s;

	printf("### 3. Contention: N clients on one name\n\n");
	printf("Redis has no queue: a client whose `SET NX` fails retries at "
	    "once (no sleep),\nthe most a Redis client can do.  Wait: from "
	    "asking to holding.  *vs own\nnames*: handoffs/s over the "
	    "cycles/s of N clients on their own names.\n\n");
	printf("| N | system | handoffs/s | p99 wait µs | fairness max/min "
	    "| server CPU µs/handoff | vs Redis | vs own names |\n"
	    "|---|---|---|---|---|---|---|---|\n");
	for (i = 0; i < NCONT; i++) {
		for (s = 0; s < SYS_COUNT; s++) {
			f = &b->r.cont[i][s];
			if (f->rate.n == 0)
				continue;
			printf("| %d | %s | %s | %s | %s | %s | %s | %s |\n",
			    cont_clients[i], sys_name((enum sys)s),
			    fig(&f->rate, 0), fig(&f->p99, 0),
			    fig(&f->fair, 2), fig(&f->cpu, 1),
			    s == SYS_REDIS ? "1" : fig(&f->vs_redis, 2),
			    fig(&f->vs_own, 2));
		}
	}
	printf("\n");
	report_contention_pinned(b);
	fflush(stdout);
}

/* Scenario 4, clients holding their own names. */
void
report_scale(const struct bench *b)
{
	const struct results	*r = &b->r;
	int			 i, s;

	printf("### 4a. Scale: C connected clients, each holding its own "
	    "name\n\n");
	printf("Each measurement starts a fresh server.  RSS is the growth "
	    "of VmRSS in\n/proc/PID/status, divided by C (kernel socket and "
	    "file memory is not in it).\nMeanwhile one more client cycles "
	    "its own name through liblocks (Redis: RESP),\npinned with the "
	    "server to one CPU: compare with scenario 1, *one CPU*.\n\n");
	printf("| C | system | RSS per client KiB | time to get all in ms | "
	    "one more client p50 µs | p99 µs |\n"
	    "|---|---|---|---|---|---|\n");
	for (i = 0; i < b->o.nscale; i++) {
		for (s = 0; s < SYS_COUNT; s++) {
			if (r->rss[i][s].n == 0)
				continue;
			printf("| %d | %s | %s | %s | %s | %s |\n",
			    b->o.scale[i], s == SYS_RAW ? "locksd" :
			    sys_name((enum sys)s), fig(&r->rss[i][s], 2),
			    fig(&r->all_in[i][s], 1),
			    fig(&r->extra_p50[i][s], 1),
			    fig(&r->extra_p99[i][s], 1));
		}
	}
	if (b->o.locks_socket != NULL)
		printf("\n*locksd was not restarted (--locks-socket): its RSS "
		    "growth is not from a fresh process.*\n");
	printf("\n");
	fflush(stdout);
}

/*
 * How flat the drain is: the slowest bucket's median rate over the
 * fastest's.  Medians per bucket first, so one slow run on a noisy
 * machine does not pass for a slope.
 */
static void
queue_flatness(const struct bench *b, struct figure *ret)
{
	double	 m, lo = NAN, hi = NAN;
	int	 k;

	memset(ret, 0, sizeof *ret);
	for (k = 0; k < QUEUE_BUCKETS; k++) {
		if (b->r.q_rate[k].n == 0)
			return;
		m = figure_median(&b->r.q_rate[k]);
		lo = isnan(lo) || m < lo ? m : lo;
		hi = isnan(hi) || m > hi ? m : hi;
	}
	figure_add(ret, lo / hi);
}

/* Scenario 4, one name with thousands of waiters. */
void
report_queue(const struct bench *b)
{
	const struct results	*r = &b->r;
	struct figure		 flat;
	int			 k, size = b->o.waiters / QUEUE_BUCKETS;

	queue_flatness(b, &flat);
	printf("### 4b. One name, %d waiters: release→grant handoffs as the "
	    "queue drains\n\n", b->o.waiters);
	printf("Each waiter releases as soon as it is granted; the drain "
	    "runs with the bench\nand the daemon on one CPU.  Queueing all "
	    "of them took %s ms.\nThe whole drain ran at %s handoffs/s; "
	    "slowest/fastest bucket\n(of the medians): %s.\n\n",
	    fig(&r->q_enqueue, 0), fig(&r->q_total, 0), fig(&flat, 2));
	printf("| waiters left in the queue | handoffs/s |\n|---|---|\n");
	for (k = 0; k < QUEUE_BUCKETS; k++)
		printf("| %d → %d | %s |\n", b->o.waiters - k * size,
		    b->o.waiters - (k + 1) * size + 1, fig(&r->q_rate[k], 0));
	printf("\n");
	fflush(stdout);
}

/* Scenario 5. */
void
report_cli(const struct bench *b)
{
	const struct results	*r = &b->r;

	printf("### 5. The CLI: whole-process wall time (median of %d "
	    "invocations per run)\n\n", b->o.cli_runs);
	printf("| command | ms |\n|---|---|\n");
	printf("| `locks run NAME true` | %s |\n", fig(&r->cli_locks, 2));
	printf("| `flock FILE true` | %s |\n", fig(&r->cli_flock, 2));
	printf("| ratio locks/flock | %s |\n\n", fig(&r->cli_ratio, 2));
	fflush(stdout);
}

/* One target: the figure, the bound, and how far off it is. */
static void
target_row(const char *what, const struct figure *f, double bound,
    int at_least)
{
	double	 m = figure_median(f);
	char	 off[64] = "";
	int	 met;

	if (f->n == 0)
		return;
	met = at_least ? m >= bound : m <= bound;
	if (!met && at_least)
		snprintf(off, sizeof off, "%.0f%% short (×%.2f needed)",
		    (1 - m / bound) * 100, bound / m);
	else if (!met)
		snprintf(off, sizeof off, "%.0f%% over", (m / bound - 1) * 100);
	printf("| %s | %s | %s %.2f | %s | %s |\n", what, fig(f, 2),
	    at_least ? "≥" : "≤", bound, met ? "met" : "**not met**", off);
}

/* The scale figure at n clients for sys, or an empty one. */
static const struct figure *
scale_fig(const struct bench *b, int n, enum sys sys)
{
	static const struct figure	 none;
	int				 i;

	for (i = 0; i < b->o.nscale; i++) {
		if (b->o.scale[i] == n)
			return &b->r.rss[i][sys];
	}
	return &none;
}

/* The targets, met or not, judged on the medians. */
void
report_targets(const struct bench *b)
{
	const struct results	*r = &b->r;
	struct figure		 flat;
	char			 what[128];
	int			 i;

	queue_flatness(b, &flat);
	printf("### Targets (issue 5), judged on the medians\n\n");
	printf("| target | measured | needed | verdict | off by |\n"
	    "|---|---|---|---|---|\n");
	target_row("1 client, one CPU: liblocks/Redis cycles/s",
	    &r->pinned[SYS_LOCKS].vs_redis, 1.0, 1);
	target_row("1 client, one CPU: raw lines/Redis cycles/s",
	    &r->pinned[SYS_RAW].vs_redis, 1.0, 1);
	target_row("1 client, free: liblocks/Redis cycles/s",
	    &r->tput[0][SYS_LOCKS].vs_redis, 1.0, 1);
	target_row("16 clients: liblocks/Redis",
	    &r->tput[2][SYS_LOCKS].vs_redis, 1.1, 1);
	target_row("16 clients: raw lines/Redis",
	    &r->tput[2][SYS_RAW].vs_redis, 1.1, 1);
	target_row("16 clients: liblocks/echo limit",
	    &r->tput[2][SYS_LOCKS].vs_echo, 0.85, 1);
	target_row("16 clients: raw lines/echo limit",
	    &r->tput[2][SYS_RAW].vs_echo, 0.85, 1);
	for (i = 0; i < NCONT; i++) {
		snprintf(what, sizeof what, "%d on one name: fairness max/min "
		    "(liblocks)", cont_clients[i]);
		target_row(what, &r->cont[i][SYS_LOCKS].fair, 1.5, 0);
	}
	target_row("16 on one name: handoffs/s ÷ 16 own names (liblocks)",
	    &r->cont[1][SYS_LOCKS].vs_own, 0.8, 1);
	target_row("16 on one name: handoffs/s ÷ 16 own names (raw lines)",
	    &r->cont[1][SYS_RAW].vs_own, 0.8, 1);
	target_row("same, one CPU (liblocks)",
	    &r->cont_pinned[SYS_LOCKS].vs_own, 0.8, 1);
	target_row("same, one CPU (raw lines)",
	    &r->cont_pinned[SYS_RAW].vs_own, 0.8, 1);
	target_row("C = 9000: daemon RSS KiB per client",
	    scale_fig(b, 9000, SYS_RAW), 4.0, 0);
	target_row("9000 waiters: slowest/fastest bucket (bench's own bar)",
	    &flat, 0.8, 1);
	target_row("path lock cycle time ÷ name lock cycle (issue 12)",
	    &r->path_cost, 1.3, 0);
	printf("\n");
	fflush(stdout);
}
