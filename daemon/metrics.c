/*
 * The daemon's metrics: the counters the hot paths add to (in the session
 * host's struct metrics, no lock and no allocation), the JSON a status
 * with "metrics":true replies with (gauges read from the lock table and
 * the sessions at that moment), and --metrics-file, the same numbers as
 * Prometheus text (protocol/metrics.c) rewritten atomically for
 * node_exporter's textfile collector.
 */

#include <sys/stat.h>

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "daemon.h"

/* The 1 s tick comes a little early or late: rewrite on the due one. */
#define TICK_SLACK	0.1

struct metrics_file {
	char		*path;
	char		 dir[PATH_MAX];		/* its temp files go here */
	const char	*base;			/* path's last component */
	double		 interval;		/* seconds between rewrites */
	double		 next_at;		/* monotonic */
	int		 failing;		/* the last write failed */
};

/* One of the busiest locks, as a scrape finds it. */
struct busy {
	const char	*name;
	enum proto_scope scope;
	size_t		 waiters;
	size_t		 holders;
	double		 oldest;		/* its first waiter's wait */
};

static const char *const refusal_names[METRICS_REFUSED_COUNT] = {
	[METRICS_REFUSED_NOT_ALLOWED] = "not_allowed",
	[METRICS_REFUSED_MAX_CLIENTS] = "max_clients",
	[METRICS_REFUSED_PER_UID] = "max_clients_per_uid",
	[METRICS_REFUSED_FD_LIMIT] = "fd_limit",
	[METRICS_REFUSED_NO_MEMORY] = "no_memory",
};

static const char *const cancel_names[METRICS_CANCEL_COUNT] = {
	[METRICS_CANCEL_RELEASE] = "release",
	[METRICS_CANCEL_DISCONNECT] = "disconnect",
};

/* Count one observation of seconds into its bucket. */
void
metrics_observe(struct metrics_hist *h, double seconds)
{
	size_t	 i = 0;

	while (i < PROTO_METRICS_BUCKETS && seconds > proto_metrics_bounds[i])
		i++;
	h->bucket[i]++;
	h->sum += seconds;
}

static struct json_object *
uint_json(uint64_t n)
{
	return json_object_new_int64(n > INT64_MAX ? INT64_MAX : (int64_t)n);
}

/* A histogram as PROTOCOL.md has it: cumulative [bound, count] pairs. */
static struct json_object *
hist_encode(const struct metrics_hist *h)
{
	struct json_object	*obj, *buckets, *pair;
	uint64_t		 n = 0;
	size_t			 i;
	char			 bound[32];

	obj = json_object_new_object();
	buckets = json_object_new_array();
	for (i = 0; i < PROTO_METRICS_BUCKETS; i++) {
		n += h->bucket[i];
		pair = json_object_new_array();
		/* As written, not as %.17g would have 0.1. */
		snprintf(bound, sizeof bound, "%g", proto_metrics_bounds[i]);
		json_object_array_add(pair, json_object_new_double_s(
		    proto_metrics_bounds[i], bound));
		json_object_array_add(pair, uint_json(n));
		json_object_array_add(buckets, pair);
	}
	n += h->bucket[PROTO_METRICS_BUCKETS];
	json_object_object_add(obj, "buckets", buckets);
	json_object_object_add(obj, "count", uint_json(n));
	json_object_object_add(obj, "sum", json_object_new_double(h->sum));
	return obj;
}

/* {"local": local, "cluster": cluster}, the cluster's only with --etcd. */
static struct json_object *
by_scope(struct session_host *host, struct json_object *local,
    struct json_object *cluster)
{
	struct json_object	*obj = json_object_new_object();

	json_object_object_add(obj, "local", local);
	if (host->cluster != NULL)
		json_object_object_add(obj, "cluster", cluster);
	else
		json_object_put(cluster);
	return obj;
}

/* Whether a is busier than b: more waiters, then a longer first wait. */
static int
busier(const struct busy *a, const struct busy *b)
{
	if (a->waiters != b->waiters)
		return a->waiters > b->waiters;
	return a->oldest > b->oldest;
}

/* Put one lock into the top n of busy, kept busiest first; n grows. */
static void
busy_insert(struct busy *busy, size_t *n, const struct busy *b)
{
	size_t	 i;

	if (*n == PROTO_METRICS_BUSIEST && !busier(b, &busy[*n - 1]))
		return;
	i = *n < PROTO_METRICS_BUSIEST ? (*n)++ : *n - 1;
	for (; i > 0 && busier(b, &busy[i - 1]); i--)
		busy[i] = busy[i - 1];
	busy[i] = *b;
}

/*
 * Walk one table for its locks with waiters: how many there are, and
 * the busiest into busy.  The wait is the realtime since of the queue
 * entry, as list shows it.
 */
static size_t
busy_collect(struct locktab *tab, enum proto_scope scope, double now,
    struct busy *busy, size_t *n)
{
	struct lock	*lock;
	struct lock_req	*req;
	struct busy	 b;
	size_t		 contended = 0;

	if (tab == NULL)
		return 0;
	for (lock = locktab_first(tab); lock != NULL;
	    lock = locktab_next(lock)) {
		if ((req = lock_first_waiter(lock)) == NULL)
			continue;
		contended++;
		b.name = lock_name(lock);
		b.scope = scope;
		b.oldest = now - lock_req_since(req);
		if (b.oldest < 0)
			b.oldest = 0;
		for (b.waiters = 0; req != NULL; req = lock_req_next(req))
			b.waiters++;
		b.holders = 0;
		for (req = lock_first_holder(lock); req != NULL;
		    req = lock_req_next(req))
			b.holders++;
		busy_insert(busy, n, &b);
	}
	return contended;
}

static struct json_object *
busy_encode(const struct busy *b)
{
	struct json_object	*obj = json_object_new_object();

	json_object_object_add(obj, "name", json_object_new_string(b->name));
	json_object_object_add(obj, "scope",
	    json_object_new_string(proto_scope_name(b->scope)));
	json_object_object_add(obj, "waiters", uint_json(b->waiters));
	json_object_object_add(obj, "holders", uint_json(b->holders));
	json_object_object_add(obj, "oldest_wait_seconds",
	    json_object_new_double(b->oldest));
	return obj;
}

/* The per-lock gauges: how many locks have waiters, the busiest of them. */
static void
encode_locks(struct session_host *host, struct json_object *obj)
{
	struct busy		 busy[PROTO_METRICS_BUSIEST];
	struct json_object	*array;
	double			 now = clock_realtime();
	size_t			 n = 0, i, local, cluster;

	local = busy_collect(host->locktab, PROTO_SCOPE_LOCAL, now, busy, &n);
	cluster = busy_collect(host->cluster, PROTO_SCOPE_CLUSTER, now, busy,
	    &n);
	json_object_object_add(obj, "contended_locks", by_scope(host,
	    uint_json(local), uint_json(cluster)));
	array = json_object_new_array();
	for (i = 0; i < n; i++)
		json_object_array_add(array, busy_encode(&busy[i]));
	json_object_object_add(obj, "busiest", array);
}

/* A scope's grants by mode. */
static struct json_object *
grants_encode(const struct metrics_scope *m)
{
	struct json_object	*obj = json_object_new_object();

	json_object_object_add(obj, "exclusive",
	    uint_json(m->grants[PROTO_EXCLUSIVE]));
	json_object_object_add(obj, "shared", uint_json(m->grants[PROTO_SHARED]));
	return obj;
}

/* An object of counters by the names given. */
static struct json_object *
named_encode(const uint64_t *counts, const char *const *names, size_t n)
{
	struct json_object	*obj = json_object_new_object();
	size_t			 i;

	for (i = 0; i < n; i++)
		json_object_object_add(obj, names[i], uint_json(counts[i]));
	return obj;
}

/* Error replies by code, every code but ok. */
static struct json_object *
errors_encode(const struct metrics *m)
{
	struct json_object	*obj = json_object_new_object();
	int			 i;

	for (i = PROTO_OK + 1; i < PROTO_E_COUNT; i++)
		json_object_object_add(obj, proto_error_code(i),
		    uint_json(m->conn.errors[i]));
	return obj;
}

/* What the lock table and its stores show now. */
static void
encode_tables(struct session_host *host, struct json_object *obj)
{
	struct locktab	*tab = host->locktab, *cl = host->cluster;
	const struct metrics *m = &host->metrics;
	size_t		 outside, handoffs;

	json_object_object_add(obj, "locks_held", by_scope(host,
	    uint_json(locktab_nheld(tab)),
	    uint_json(cl != NULL ? locktab_nheld(cl) : 0)));
	json_object_object_add(obj, "waiters", by_scope(host,
	    uint_json(locktab_nwaiting(tab)),
	    uint_json(cl != NULL ? locktab_nwaiting(cl) : 0)));
	encode_locks(host, obj);
	json_object_object_add(obj, "idle_locks",
	    uint_json(locktab_nidle(tab)));
	json_object_object_add(obj, "grants_total", by_scope(host,
	    grants_encode(&m->scope[PROTO_SCOPE_LOCAL]),
	    grants_encode(&m->scope[PROTO_SCOPE_CLUSTER])));
	json_object_object_add(obj, "timeouts_total", by_scope(host,
	    uint_json(m->scope[PROTO_SCOPE_LOCAL].timeouts),
	    uint_json(m->scope[PROTO_SCOPE_CLUSTER].timeouts)));
	json_object_object_add(obj, "cancellations_total",
	    named_encode(m->cancels, cancel_names, METRICS_CANCEL_COUNT));
	json_object_object_add(obj, "errors_total", errors_encode(m));
	json_object_object_add(obj, "wait_seconds", by_scope(host,
	    hist_encode(&m->scope[PROTO_SCOPE_LOCAL].wait),
	    hist_encode(&m->scope[PROTO_SCOPE_CLUSTER].wait)));
	json_object_object_add(obj, "hold_seconds", by_scope(host,
	    hist_encode(&m->scope[PROTO_SCOPE_LOCAL].hold),
	    hist_encode(&m->scope[PROTO_SCOPE_CLUSTER].hold)));
	listing_outside_counts(host->listing, &outside, &handoffs);
	json_object_object_add(obj, "outside_holders", uint_json(outside));
	json_object_object_add(obj, "outside_blocked_locks",
	    uint_json(locktab_nblocked(tab)));
	json_object_object_add(obj, "watch_threads",
	    uint_json(store_file_nwatching(host->store)));
	json_object_object_add(obj, "handoffs", uint_json(handoffs));
}

/* The fencing tokens: the next, the ceiling on disk, what is left. */
static void
encode_tokens(struct session_host *host, struct json_object *obj)
{
	const struct metrics	*m = &host->metrics;
	int64_t			 next = locktab_next_token(host->locktab);
	int64_t			 headroom = m->token_ceiling - next;

	json_object_object_add(obj, "token_next", json_object_new_int64(next));
	json_object_object_add(obj, "token_ceiling",
	    json_object_new_int64(m->token_ceiling));
	json_object_object_add(obj, "token_headroom",
	    json_object_new_int64(headroom > 0 ? headroom : 0));
	json_object_object_add(obj, "tokens_left",
	    json_object_new_int64(next < TOKEN_MAX ? TOKEN_MAX - next : 0));
	json_object_object_add(obj, "token_save_failing",
	    json_object_new_int(m->token_failing != 0));
}

/*
 * The metrics object of a status reply (PROTOCOL.md): the counters, and
 * the gauges as the tables and sessions show them now.
 */
struct json_object *
metrics_encode(struct session_host *host)
{
	const struct metrics	*m = &host->metrics;
	struct json_object	*obj = json_object_new_object();
	size_t			 throttled, bytes;

	json_object_object_add(obj, "uptime_seconds",
	    json_object_new_double(clock_monotonic() - host->started));
	json_object_object_add(obj, "connections",
	    uint_json(host->nsessions));
	json_object_object_add(obj, "connections_accepted_total",
	    uint_json(m->accepted));
	json_object_object_add(obj, "connections_refused_total",
	    named_encode(m->refused, refusal_names, METRICS_REFUSED_COUNT));
	encode_tables(host, obj);
	session_output(host, &throttled, &bytes);
	json_object_object_add(obj, "throttle_events_total",
	    uint_json(m->conn.throttles));
	json_object_object_add(obj, "throttled_connections",
	    uint_json(throttled));
	json_object_object_add(obj, "throttled_bytes", uint_json(bytes));
	encode_tokens(host, obj);
	return obj;
}

/*
 * --metrics-file PATH, to be rewritten every interval seconds from now
 * (the caller writes it first).  Its directory must exist: NULL with why
 * in err otherwise.
 */
struct metrics_file *
metrics_file_new(const char *path, double interval, char *err, size_t size)
{
	struct metrics_file	*mf;
	struct stat		 sb;
	const char		*slash, *why = NULL;
	int			 missing = 0;

	if ((mf = calloc(1, sizeof *mf)) == NULL ||
	    (mf->path = strdup(path)) == NULL) {
		free(mf);
		snprintf(err, size, "out of memory");
		return NULL;
	}
	server_parent_dir(path, mf->dir, sizeof mf->dir);
	slash = strrchr(mf->path, '/');
	mf->base = slash != NULL ? slash + 1 : mf->path;
	if (*mf->base == '\0')
		why = "it names a directory, not a file";
	else if (stat(mf->dir, &sb) == -1) {
		missing = errno == ENOENT;
		why = strerror(errno);
	}
	else if (!S_ISDIR(sb.st_mode))
		why = "its directory is not a directory";
	if (why != NULL) {
		snprintf(err, size, "cannot write the metrics file %s: %s%s",
		    path, why, missing ? " (its directory must exist)" : "");
		metrics_file_free(mf);
		return NULL;
	}
	mf->interval = interval;
	mf->next_at = clock_monotonic() + interval - TICK_SLACK;
	return mf;
}

void
metrics_file_free(struct metrics_file *mf)
{
	if (mf == NULL)
		return;
	free(mf->path);
	free(mf);
}

/* Write text to a temp file beside the metrics file, then rename it in. */
static int
metrics_file_replace(struct metrics_file *mf, const char *text, size_t len)
{
	char	 tmp[PATH_MAX];
	int	 fd, error;

	if (snprintf(tmp, sizeof tmp, "%s/.%s.XXXXXX", mf->dir, mf->base) >=
	    (int)sizeof tmp)
		return -ENAMETOOLONG;
	if ((fd = mkostemp(tmp, O_CLOEXEC)) == -1)
		return -errno;
	/* node_exporter reads it as another user. */
	error = fchmod(fd, 0644) == -1 ? -errno : fd_write_all(fd, text, len);
	if (close(fd) == -1 && error == 0)
		error = -errno;
	if (error == 0 && rename(tmp, mf->path) == -1)
		error = -errno;
	if (error != 0)
		unlink(tmp);
	return error;
}

/*
 * Rewrite the metrics file now, in Prometheus' text format.  0, or
 * -errno with a message naming the path in err.
 */
int
metrics_file_write(struct metrics_file *mf, struct session_host *host,
    char *err, size_t size)
{
	struct json_object	*metrics = metrics_encode(host);
	char			*text;
	size_t			 len;
	int			 error;

	text = proto_metrics_text(metrics, PROTO_METRICS_PROMETHEUS, &len);
	json_object_put(metrics);
	error = text != NULL ? metrics_file_replace(mf, text, len) : -ENOMEM;
	free(text);
	if (error != 0)
		snprintf(err, size, "cannot write the metrics file %s: %s",
		    mf->path, strerror(-error));
	return error;
}

/*
 * The 1 s tick: rewrite the file once its interval is up.  A failure is
 * logged once, and so is the first success after it; the daemon goes on.
 */
void
metrics_file_tick(struct metrics_file *mf, struct session_host *host)
{
	char	 err[PATH_MAX + 128];
	double	 now;

	if (mf == NULL || (now = clock_monotonic()) < mf->next_at)
		return;
	mf->next_at = now + mf->interval - TICK_SLACK;
	if (metrics_file_write(mf, host, err, sizeof err) != 0) {
		if (!mf->failing)
			log_warnx("%s; trying again every %g s", err,
			    mf->interval);
		mf->failing = 1;
		return;
	}
	if (mf->failing)
		log_info("wrote the metrics file %s again", mf->path);
	mf->failing = 0;
}
