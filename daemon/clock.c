/*
 * The daemon's two clocks: monotonic for waits, realtime for timestamps.
 */

#include <time.h>

#include "daemon.h"

static double
clock_seconds(clockid_t id)
{
	struct timespec	 ts;

	clock_gettime(id, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Unix time in seconds, for "since" stamps and token seeding. */
double
clock_realtime(void)
{
	return clock_seconds(CLOCK_REALTIME);
}

/* Seconds on a clock that never jumps, for measuring waits. */
double
clock_monotonic(void)
{
	return clock_seconds(CLOCK_MONOTONIC);
}
