/*
 * A clock the fuzzer controls, in place of daemon/clock.c: the same input
 * always sees the same times.
 */

#include "daemon.h"

void	clock_fake_advance(double);

static double	fake_now = 1.8e9;

/* Move both clocks forward. */
void
clock_fake_advance(double seconds)
{
	fake_now += seconds;
}

/* The fake unix time. */
double
clock_realtime(void)
{
	return fake_now;
}

/* The fake monotonic time. */
double
clock_monotonic(void)
{
	return fake_now;
}
