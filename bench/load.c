/*
 * Scenarios 1 to 3: N clients, one thread and one connection each,
 * cycle acquire+release for a fixed time, each on its own name or all on
 * one.  Only cycles that end inside the window count.
 */

#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench.h"

#define WARMUP_CYCLES	5	/* per client, before the window opens */

struct load {
	enum sys		 sys;
	int			 shared;	/* all clients on one name */
	pthread_barrier_t	 start;
	atomic_int		 stop;
};

struct worker {
	pthread_t		 thread;
	struct load		*load;
	struct client		*client;
	uint64_t		 grants;	/* cycles ended in the window */
	struct samples		 lat;		/* their latency or wait */
	int			 failed;
};

/* Acquire, retrying a Redis try until it succeeds or the window closes. */
static int
worker_acquire(struct worker *w, int *got)
{
	do {
		if (client_acquire(w->client, got) == -1)
			return -1;
	} while (!*got && !atomic_load_explicit(&w->load->stop,
	    memory_order_relaxed));
	return 0;
}

/* One timed cycle; *done is set once the window has closed. */
static int
worker_cycle(struct worker *w, int *done)
{
	struct load	*load = w->load;
	uint64_t	 t0, t1, t2;
	int		 got;

	t0 = now_ns();
	if (worker_acquire(w, &got) == -1)
		return -1;
	if (!got) {
		*done = 1;
		return 0;
	}
	t1 = now_ns();
	if (client_release(w->client) == -1)
		return -1;
	t2 = now_ns();
	if (atomic_load_explicit(&load->stop, memory_order_relaxed)) {
		*done = 1;
		return 0;
	}
	w->grants++;
	return samples_add(&w->lat, load->shared ? t1 - t0 : t2 - t0);
}

/* Warm up, wait for the others, then cycle until told to stop. */
static void *
worker_main(void *arg)
{
	struct worker	*w = arg;
	int		 i, got, done = 0;

	for (i = 0; i < WARMUP_CYCLES && !w->failed; i++) {
		if (worker_acquire(w, &got) == -1 || (got &&
		    client_release(w->client) == -1))
			w->failed = 1;
	}
	pthread_barrier_wait(&w->load->start);
	while (!w->failed && !done) {
		if (worker_cycle(w, &done) == -1)
			w->failed = 1;
	}
	if (w->failed) {
		/* Let go of anything held, so the others can finish. */
		client_close(w->client);
		w->client = NULL;
	}
	return NULL;
}

/* Sum the workers' results into r; -1 if any of them failed. */
static int
load_collect(struct worker *workers, int n, double secs, int64_t cpu_ns,
    struct load_result *r)
{
	struct samples	 all;
	uint64_t	 total = 0, lo = UINT64_MAX, hi = 0;
	int		 i, failed = 0;

	memset(&all, 0, sizeof all);
	for (i = 0; i < n; i++) {
		failed |= workers[i].failed;
		total += workers[i].grants;
		if (workers[i].grants < lo)
			lo = workers[i].grants;
		if (workers[i].grants > hi)
			hi = workers[i].grants;
		if (samples_append(&all, &workers[i].lat) == -1)
			failed = 1;
	}
	r->rate = (double)total / secs;
	r->p50_us = samples_pct(&all, 50);
	r->p99_us = samples_pct(&all, 99);
	r->fairness = lo == 0 ? INFINITY : (double)hi / (double)lo;
	r->cpu_us = cpu_ns < 0 || total == 0 ? NAN :
	    (double)cpu_ns / 1e3 / (double)total;
	samples_free(&all);
	return failed ? -1 : 0;
}

/* Connect n clients, each on its own name or all on one. */
static int
load_connect(const struct target *t, struct load *load,
    struct worker *workers, int n)
{
	char	 name[64];
	int	 i;

	for (i = 0; i < n; i++) {
		workers[i].load = load;
		if (load->shared)
			snprintf(name, sizeof name, "bench-shared");
		else
			snprintf(name, sizeof name, "bench-%d", i);
		if (client_open(t, load->sys, name, &workers[i].client) == -1) {
			fprintf(stderr, "locks-bench: %s: cannot connect "
			    "client %d\n", sys_name(load->sys), i);
			return -1;
		}
	}
	return 0;
}

/* Free the workers and their clients. */
static void
load_free(struct worker *workers, int n)
{
	int	 i;

	for (i = 0; i < n; i++) {
		client_close(workers[i].client);
		samples_free(&workers[i].lat);
	}
	free(workers);
}

/*
 * Run n clients of sys for secs seconds, each cycling its own name, or
 * all one name if shared; pid is the server's, for its CPU time.
 */
int
load_run(const struct target *t, enum sys sys, pid_t pid, int n,
    int shared, double secs, struct load_result *r)
{
	struct load	 load;
	struct worker	*workers;
	uint64_t	 t0, t1;
	int64_t		 cpu0, cpu1;
	int		 i, rc;

	memset(&load, 0, sizeof load);
	load.sys = sys;
	load.shared = shared;
	if ((workers = calloc((size_t)n, sizeof *workers)) == NULL)
		return -1;
	if (load_connect(t, &load, workers, n) == -1) {
		load_free(workers, n);
		return -1;
	}
	pthread_barrier_init(&load.start, NULL, (unsigned)n + 1);
	for (i = 0; i < n; i++) {
		/* Started threads would wait at the barrier forever. */
		if (pthread_create(&workers[i].thread, NULL, worker_main,
		    &workers[i]) != 0) {
			fprintf(stderr, "locks-bench: cannot start threads\n");
			exit(1);
		}
	}
	pthread_barrier_wait(&load.start);
	t0 = now_ns();
	cpu0 = proc_cpu_ns(pid);
	sleep_secs(secs);
	atomic_store(&load.stop, 1);
	cpu1 = proc_cpu_ns(pid);
	t1 = now_ns();
	for (i = 0; i < n; i++)
		pthread_join(workers[i].thread, NULL);
	rc = load_collect(workers, n, (double)(t1 - t0) / 1e9,
	    cpu0 < 0 || cpu1 < 0 ? -1 : cpu1 - cpu0, r);
	pthread_barrier_destroy(&load.start);
	load_free(workers, n);
	return rc;
}
