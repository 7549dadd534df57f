/*
 * Scenario 6: a path lock's cycle beside a name lock's, one liblocks
 * client each, alternating run by run.  A path lock costs the client an
 * open(2) and close(2) and the daemon an fstat(2) per acquire, plus the
 * descriptor on the socket; the target is at most 1.3 times a name's.
 */

#include <stdio.h>
#include <string.h>

#include <locks.h>

#include "bench.h"

/* Cycle target for secs on a fresh connection; cycles per second, or -1. */
static double
cycle_rate(const char *socket, const char *target, double secs)
{
	locks_conn	*c;
	uint64_t	 start, end, n = 0;

	if (locks_connect(socket, "locks-bench", &c) != LOCKS_OK)
		return -1;
	/* Warm up: the first cycle opens the lock and its file. */
	if (locks_acquire(c, target, NULL, NULL) != LOCKS_OK ||
	    locks_release(c, target) != LOCKS_OK) {
		locks_close(c);
		return -1;
	}
	start = now_ns();
	end = start + (uint64_t)(secs * 1e9);
	while (now_ns() < end) {
		if (locks_acquire(c, target, NULL, NULL) != LOCKS_OK ||
		    locks_release(c, target) != LOCKS_OK) {
			locks_close(c);
			return -1;
		}
		n++;
	}
	locks_close(c);
	return n / ((now_ns() - start) / 1e9);
}

void
scenario_paths(struct bench *b)
{
	const char	*socket = b->t.path[SYS_LOCKS];
	char		 path[4200], a[64], p[64], r[64];
	double		 name_rate, path_rate;
	int		 run;

	snprintf(path, sizeof path, "%s/bench-path.lock", b->dir);
	fprintf(stderr, "path lock beside name lock, one client:\n");
	for (run = 0; run < b->o.runs; run++) {
		name_rate = cycle_rate(socket, "bench-name", b->o.secs);
		path_rate = cycle_rate(socket, path, b->o.secs);
		if (name_rate <= 0 || path_rate <= 0)
			errx_bench(b, "a path or name cycle failed");
		figure_add(&b->r.path_name, name_rate);
		figure_add(&b->r.path_path, path_rate);
		figure_add(&b->r.path_cost, name_rate / path_rate);
	}
	printf("## 6. A path lock's cycle beside a name lock's\n\n"
	    "One liblocks client, acquire+release, on `bench-name` and on a "
	    "file by path (its descriptor passed with each acquire), "
	    "alternating run by run.\nCost is the path cycle's time over "
	    "the name cycle's in the same run: median (min to max).\n\n");
	printf("| lock | cycles/s |\n|---|---|\n");
	printf("| name | %s |\n", figure_fmt(&b->r.path_name, 0, a, sizeof a));
	printf("| path | %s |\n", figure_fmt(&b->r.path_path, 0, p, sizeof p));
	printf("| path cycle time ÷ name cycle | %s |\n\n",
	    figure_fmt(&b->r.path_cost, 2, r, sizeof r));
}
