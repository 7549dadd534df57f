/*
 * Scenario 4: thousands of connections held from one thread.  Each is a
 * raw blocking socket; connects are blocking too, so a full listen
 * backlog just waits for the server.  Raw sockets rather than liblocks:
 * a liblocks connection needs a thread to wait in, and 9,000 threads
 * would measure the scheduler, not the daemon.
 */

#include <sys/epoll.h>
#include <sys/resource.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bench.h"

#define EXTRA_WARMUP	100	/* cycles before the extra client counts */
#define EXTRA_CYCLES	2000	/* cycles of the extra client */
#define QUEUE_NAME	"bench-queue"
#define QUEUE_WAIT_SECS	60.0	/* longest wait for the queue to fill */
#define QUEUE_STALL_MS	10000	/* longest pause between two grants */

static const char	 hello_line[] =
    "{\"id\":1,\"op\":\"hello\",\"client\":\"locks-bench\"}\n";

/* Raise our descriptor limit; 1 if n connections fit, 0 if not. */
int
scale_fd_room(int n)
{
	struct rlimit	 rl;

	if (getrlimit(RLIMIT_NOFILE, &rl) == -1)
		return 0;
	if (rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
		getrlimit(RLIMIT_NOFILE, &rl);
	}
	return rl.rlim_cur >= (rlim_t)n + 64;
}

/* Close n wires and free the array. */
static void
wires_close(struct wire **wires, int n)
{
	int	 i;

	for (i = 0; i < n; i++)
		wire_close(wires[i]);
	free(wires);
}

/* Connect client i and ask for its own name, without waiting. */
static int
hold_send(const struct target *t, enum sys sys, int i, struct wire **ret)
{
	char		 name[64], line[512], ttl[] = "600000";
	const char	*argv[] = { "SET", name, "held", "NX", "PX", ttl };
	int		 len;

	snprintf(name, sizeof name, "scale-%d", i);
	if (wire_connect(t->path[sys], ret) == -1)
		return -1;
	if (sys == SYS_REDIS)
		return wire_resp_command(*ret, 6, argv);
	/* What liblocks sends, hello and acquire, in one write. */
	len = snprintf(line, sizeof line, "%s", hello_line);
	len += locks_line_acquire(line + len, sizeof line - (size_t)len, name);
	return wire_write(*ret, line, (size_t)len);
}

/* Wait for client i's grant. */
static int
hold_wait(enum sys sys, struct wire *w)
{
	long long	 value;
	char		 type;

	if (sys == SYS_REDIS)
		return wire_resp_reply(w, &type, &value) == 0 && type == '+' ?
		    0 : -1;
	if (wire_final_reply(w) == -1)
		return -1;
	return wire_final_reply(w);
}

/*
 * Time one more client's cycles while the others hold their names, the
 * client and the server on CPU 0, as in scenario 1's steady placement.
 */
static int
hold_extra(const struct target *t, enum sys sys, pid_t pid,
    struct scale_result *r)
{
	struct client	*c;
	struct samples	 lat;
	uint64_t	 t0;
	int		 i, got, rc = 0;

	if (client_open(t, sys, "scale-extra", &c) == -1)
		return -1;
	proc_pin(pid, 0);
	proc_pin(0, 0);
	memset(&lat, 0, sizeof lat);
	for (i = 0; i < EXTRA_WARMUP + EXTRA_CYCLES && rc == 0; i++) {
		t0 = now_ns();
		if (client_acquire(c, &got) == -1 || !got ||
		    client_release(c) == -1)
			rc = -1;
		else if (i >= EXTRA_WARMUP)
			rc = samples_add(&lat, now_ns() - t0);
	}
	proc_pin(0, -1);
	proc_pin(pid, -1);
	r->p50_us = samples_pct(&lat, 50);
	r->p99_us = samples_pct(&lat, 99);
	samples_free(&lat);
	client_close(c);
	return rc;
}

/*
 * Connect n clients of sys (SYS_RAW for locksd, or SYS_REDIS), each
 * taking its own name; measure the time until all hold it, the server's
 * RSS growth per client, and one more client's cycle latency.
 */
int
scale_hold(const struct target *t, enum sys sys, pid_t pid, int n,
    struct scale_result *r)
{
	struct wire	**wires;
	long		  rss0, rss1;
	uint64_t	  t0, t1;
	int		  i, rc = 0;

	if ((wires = calloc((size_t)n, sizeof *wires)) == NULL)
		return -1;
	rss0 = proc_rss_kib(pid);
	t0 = now_ns();
	for (i = 0; i < n && rc == 0; i++)
		rc = hold_send(t, sys, i, &wires[i]);
	for (i = 0; i < n && rc == 0; i++)
		rc = hold_wait(sys, wires[i]);
	t1 = now_ns();
	rss1 = proc_rss_kib(pid);
	if (rc == 0) {
		r->all_in_ms = (double)(t1 - t0) / 1e6;
		r->rss_kib = rss0 < 0 || rss1 < 0 ? NAN :
		    (double)(rss1 - rss0) / n;
		rc = hold_extra(t, sys == SYS_RAW ? SYS_LOCKS : sys, pid, r);
	} else
		fprintf(stderr, "locks-bench: %s: client %d of %d failed\n",
		    sys_name(sys), i, n);
	wires_close(wires, n);
	return rc;
}

/* Ask the daemon how many requests wait, through the holder's wire. */
static long
queue_waiters(struct wire *w)
{
	static const char	 status[] = "{\"id\":9,\"op\":\"status\"}\n";
	const char		*line, *p;
	char			 num[32];
	size_t			 len, k;

	if (wire_write(w, status, sizeof status - 1) == -1)
		return -1;
	do {
		if (wire_read_line(w, &line, &len) == -1)
			return -1;
	} while (len == 0 || wire_reply_kind(line, len) == REPLY_EVENT);
	if ((p = memmem(line, len, "\"waiters\":", 10)) == NULL)
		return -1;
	p += 10;
	for (k = 0; k < sizeof num - 1 && p + k < line + len &&
	    p[k] >= '0' && p[k] <= '9'; k++)
		num[k] = p[k];
	num[k] = '\0';
	return strtol(num, NULL, 10);
}

/* Queue n waiters behind a holder; return the holder's wire. */
static struct wire *
queue_fill(const struct target *t, struct wire **wires, int n)
{
	struct wire	*holder;
	char		 line[256];
	size_t		 len;
	uint64_t	 deadline;
	int		 i;

	len = (size_t)locks_line_acquire(line, sizeof line, QUEUE_NAME);
	if (wire_connect(t->path[SYS_RAW], &holder) == -1)
		return NULL;
	if (wire_write(holder, line, len) == -1 ||
	    wire_final_reply(holder) == -1)
		goto fail;
	for (i = 0; i < n; i++) {
		if (wire_connect(t->path[SYS_RAW], &wires[i]) == -1 ||
		    wire_write(wires[i], line, len) == -1)
			goto fail;
	}
	deadline = now_ns() + (uint64_t)(QUEUE_WAIT_SECS * 1e9);
	while (queue_waiters(holder) != n) {
		if (now_ns() > deadline)
			goto fail;
		sleep_secs(0.001);
	}
	return holder;
fail:
	wire_close(holder);
	return NULL;
}

/* Read the blocking events already sent, so the drain starts clean. */
static int
queue_skip_events(struct wire **wires, int n)
{
	const char	*line;
	size_t		 len;
	int		 i, got;

	sleep_secs(0.05);
	for (i = 0; i < n; i++) {
		while ((got = wire_poll_line(wires[i], &line, &len)) == 1) {
			if (wire_reply_kind(line, len) != REPLY_EVENT)
				return -1;
		}
		if (got == -1)
			return -1;
	}
	return 0;
}

/*
 * Read what a waiter has for us.  A grant is answered with a release at
 * once, and its time recorded; blocking events are skipped.
 */
static int
queue_serve(struct wire *w, char *state, uint64_t *ts, int *ngranted,
    int *nreleased)
{
	const char	*line;
	char		 release[128];
	size_t		 len;
	int		 got;

	while ((got = wire_poll_line(w, &line, &len)) == 1) {
		switch (wire_reply_kind(line, len)) {
		case REPLY_EVENT:
			continue;
		case REPLY_FAIL:
			return -1;
		case REPLY_OK:
			break;
		}
		if (*state == 1) {
			*state = 2;
			(*nreleased)++;
			continue;
		}
		ts[(*ngranted)++] = now_ns();
		*state = 1;
		len = (size_t)locks_line_release(release, sizeof release,
		    QUEUE_NAME);
		if (wire_write(w, release, len) == -1)
			return -1;
	}
	return got;
}

/* Drain the queue: every grant answered by a release, timed per grant. */
static int
queue_drain(struct wire *holder, struct wire **wires, int n, uint64_t *ts,
    uint64_t *ret_start)
{
	struct epoll_event	 ev, events[512];
	char			*state, release[128];
	size_t			 len;
	int			 epfd, i, k, ngranted = 0, nreleased = 0, rc = -1;

	if ((state = calloc((size_t)n, 1)) == NULL ||
	    (epfd = epoll_create1(EPOLL_CLOEXEC)) == -1) {
		free(state);
		return -1;
	}
	for (i = 0; i < n; i++) {
		ev.events = EPOLLIN;
		ev.data.u32 = (uint32_t)i;
		if (epoll_ctl(epfd, EPOLL_CTL_ADD, wire_fd(wires[i]), &ev))
			goto out;
	}
	len = (size_t)locks_line_release(release, sizeof release, QUEUE_NAME);
	*ret_start = now_ns();
	if (wire_write(holder, release, len) == -1)
		goto out;
	while (nreleased < n) {
		if ((k = epoll_wait(epfd, events, 512, QUEUE_STALL_MS)) <= 0)
			goto out;
		for (i = 0; i < k; i++) {
			if (queue_serve(wires[events[i].data.u32],
			    &state[events[i].data.u32], ts, &ngranted,
			    &nreleased) == -1)
				goto out;
		}
	}
	rc = 0;
out:
	close(epfd);
	free(state);
	return rc;
}

/* Turn grant times into handoffs/s per bucket, deepest queue first. */
static void
queue_rates(const uint64_t *ts, int n, uint64_t start, struct queue_result *r)
{
	uint64_t	 prev;
	int		 b, size = n / QUEUE_BUCKETS, last;

	for (b = 0; b < QUEUE_BUCKETS; b++) {
		prev = b == 0 ? start : ts[b * size - 1];
		last = (b + 1) * size - 1;
		r->rate[b] = size / ((double)(ts[last] - prev) / 1e9);
	}
	r->total_rate = n / ((double)(ts[n - 1] - start) / 1e9);
}

/*
 * One name, one holder and n waiters behind it.  Time the queueing, then
 * release and let each waiter release as soon as it is granted, so the
 * queue drains by release->grant handoffs; report the rate per bucket.
 * The drain runs with this thread and the daemon (pid) on CPU 0, so a
 * change of rate is the daemon's doing, not a vCPU waking up or not.
 */
int
scale_queue(const struct target *t, pid_t pid, int n,
    struct queue_result *r)
{
	struct wire	**wires, *holder;
	uint64_t	 *ts, t0, start;
	int		  rc = -1;

	if (n < QUEUE_BUCKETS)
		return -1;
	wires = calloc((size_t)n, sizeof *wires);
	ts = calloc((size_t)n, sizeof *ts);
	if (wires == NULL || ts == NULL)
		goto out;
	t0 = now_ns();
	if ((holder = queue_fill(t, wires, n)) == NULL) {
		fprintf(stderr, "locks-bench: cannot queue %d waiters\n", n);
		goto out;
	}
	r->enqueue_ms = (double)(now_ns() - t0) / 1e6;
	proc_pin(pid, 0);
	proc_pin(0, 0);
	if (queue_skip_events(wires, n) == 0)
		rc = queue_drain(holder, wires, n, ts, &start);
	proc_pin(0, -1);
	proc_pin(pid, -1);
	if (rc == 0)
		queue_rates(ts, n, start, r);
	else
		fprintf(stderr, "locks-bench: the queue stalled\n");
	wire_close(holder);
out:
	if (wires != NULL)
		wires_close(wires, n);
	free(ts);
	return rc;
}
