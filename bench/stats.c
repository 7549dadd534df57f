/*
 * Clocks, latency samples and their percentiles, and figures: one value
 * per run, reported as the median with its spread.
 */

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bench.h"

/* Nanoseconds on the monotonic clock. */
uint64_t
now_ns(void)
{
	struct timespec	 ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

/* Sleep for a number of seconds, through signals. */
void
sleep_secs(double secs)
{
	struct timespec	 ts;

	ts.tv_sec = (time_t)secs;
	ts.tv_nsec = (long)((secs - (double)ts.tv_sec) * 1e9);
	while (nanosleep(&ts, &ts) == -1 && errno == EINTR)
		;
}

/* Add one sample; -1 if out of memory. */
int
samples_add(struct samples *s, uint64_t value)
{
	uint64_t	*v;
	size_t		 cap;

	if (s->n == s->cap) {
		cap = s->cap == 0 ? 4096 : s->cap * 2;
		if ((v = realloc(s->v, cap * sizeof *v)) == NULL)
			return -1;
		s->v = v;
		s->cap = cap;
	}
	s->v[s->n++] = value;
	return 0;
}

/* Add every sample of src to dst; -1 if out of memory. */
int
samples_append(struct samples *dst, const struct samples *src)
{
	size_t	 i;

	for (i = 0; i < src->n; i++) {
		if (samples_add(dst, src->v[i]) == -1)
			return -1;
	}
	return 0;
}

static int
u64_cmp(const void *a, const void *b)
{
	uint64_t	 x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

/* The pct-th percentile (nearest rank) in microseconds; sorts. */
double
samples_pct(struct samples *s, double pct)
{
	size_t	 rank;

	if (s->n == 0)
		return NAN;
	qsort(s->v, s->n, sizeof *s->v, u64_cmp);
	rank = (size_t)ceil(pct / 100.0 * (double)s->n);
	if (rank > 0)
		rank--;
	if (rank >= s->n)
		rank = s->n - 1;
	return (double)s->v[rank] / 1e3;
}

/* Free the samples; the struct may be reused. */
void
samples_free(struct samples *s)
{
	free(s->v);
	memset(s, 0, sizeof *s);
}

/* Record one run's value; NaN (not measured) is dropped. */
void
figure_add(struct figure *f, double value)
{
	if (isnan(value) || f->n == BENCH_MAX_RUNS)
		return;
	f->v[f->n++] = value;
}

static int
double_cmp(const void *a, const void *b)
{
	double	 x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

/* The median of the runs, NaN if none. */
double
figure_median(const struct figure *f)
{
	double	 v[BENCH_MAX_RUNS];

	if (f->n == 0)
		return NAN;
	memcpy(v, f->v, (size_t)f->n * sizeof *v);
	qsort(v, (size_t)f->n, sizeof *v, double_cmp);
	if (f->n % 2 == 1)
		return v[f->n / 2];
	return (v[f->n / 2 - 1] + v[f->n / 2]) / 2;
}

/* The smallest run, NaN if none. */
double
figure_min(const struct figure *f)
{
	double	 m = NAN;
	int	 i;

	for (i = 0; i < f->n; i++) {
		if (isnan(m) || f->v[i] < m)
			m = f->v[i];
	}
	return m;
}

/* The largest run, NaN if none. */
double
figure_max(const struct figure *f)
{
	double	 m = NAN;
	int	 i;

	for (i = 0; i < f->n; i++) {
		if (isnan(m) || f->v[i] > m)
			m = f->v[i];
	}
	return m;
}

/* Format one number for the table: prec decimals, "∞", or "n/a". */
static void
number_fmt(double v, int prec, char *buf, size_t size)
{
	if (isnan(v))
		snprintf(buf, size, "n/a");
	else if (isinf(v))
		snprintf(buf, size, "∞");
	else
		snprintf(buf, size, "%.*f", prec, v);
}

/* Format a figure as "median (min–max)" into buf. */
const char *
figure_fmt(const struct figure *f, int prec, char *buf, size_t size)
{
	char	 med[32], lo[32], hi[32];

	if (f->n == 0) {
		snprintf(buf, size, "n/a");
		return buf;
	}
	number_fmt(figure_median(f), prec, med, sizeof med);
	if (f->n == 1) {
		snprintf(buf, size, "%s", med);
		return buf;
	}
	number_fmt(figure_min(f), prec, lo, sizeof lo);
	number_fmt(figure_max(f), prec, hi, sizeof hi);
	snprintf(buf, size, "%s (%s–%s)", med, lo, hi);
	return buf;
}
