/*
 * Metrics: the text formatter (protocol/metrics.c) on its own, the
 * daemon's histograms (metrics_observe), and a real locksd whose status
 * with "metrics":true moves as clients take, wait, time out and cancel;
 * the per-name series stay bounded however many names a client makes;
 * --metrics-file is rewritten whole.  promtool's check of the text is in
 * test_metrics.sh.
 *
 * Tests that count exactly start a daemon of their own.
 */

#include <sys/stat.h>

#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <check.h>

#include "daemon.h"
#include "harness.h"
#include "protocol.h"

/* The text of a metrics object given as JSON, which the caller frees. */
static char *
text_of(const char *json, enum proto_metrics_format format)
{
	struct json_object	*obj = json_tokener_parse(json);
	char			*text;
	size_t			 len;

	ck_assert_msg(obj != NULL, "bad test JSON: %s", json);
	text = proto_metrics_text(obj, format, &len);
	ck_assert_ptr_nonnull(text);
	ck_assert_uint_eq(strlen(text), len);
	json_object_put(obj);
	return text;
}

/* Fail unless line (without its newline) is one of text's lines. */
static void
expect_line(const char *text, const char *line)
{
	const char	*p = text;
	size_t		 len = strlen(line);

	for (; (p = strstr(p, line)) != NULL; p += len) {
		if ((p == text || p[-1] == '\n') && p[len] == '\n')
			return;
	}
	ck_abort_msg("no line \"%s\" in:\n%s", line, text);
}

/* How many of text's lines start with prefix. */
static size_t
count_prefix(const char *text, const char *prefix)
{
	const char	*p = text;
	size_t		 n = 0;

	while (*p != '\0') {
		if (strncmp(p, prefix, strlen(prefix)) == 0)
			n++;
		if ((p = strchr(p, '\n')) == NULL)
			break;
		p++;
	}
	return n;
}

START_TEST(test_text_escapes_label_values)
{
	char	*text;

	text = text_of("{\"busiest\":[{\"name\":\"a\\\"b\\\\c\\nd\","
	    "\"scope\":\"local\",\"waiters\":3,\"holders\":1,"
	    "\"oldest_wait_seconds\":0.5}]}", PROTO_METRICS_PROMETHEUS);
	expect_line(text,
	    "locksd_lock_waiters{scope=\"local\",name=\"a\\\"b\\\\c\\nd\"} 3");
	expect_line(text, "locksd_lock_oldest_wait_seconds{scope=\"local\","
	    "name=\"a\\\"b\\\\c\\nd\"} 0.5");
	free(text);
	text = text_of("{\"errors_total\":{\"x\\u00ff\":1}}",
	    PROTO_METRICS_PROMETHEUS);
	expect_line(text, "locksd_errors_total{code=\"x\xc3\xbf\"} 1");
	free(text);
}
END_TEST

START_TEST(test_text_shows_bytes_that_are_not_utf8_as_question_marks)
{
	struct json_object	*obj = json_object_new_object();
	struct json_object	*errors = json_object_new_object();
	char			*text;

	json_object_object_add(errors, "x\xff" "y", json_object_new_int(2));
	json_object_object_add(obj, "errors_total", errors);
	ck_assert_ptr_nonnull(text = proto_metrics_text(obj,
	    PROTO_METRICS_PROMETHEUS, NULL));
	expect_line(text, "locksd_errors_total{code=\"x?y\"} 2");
	free(text);
	json_object_put(obj);
}
END_TEST

START_TEST(test_text_histogram_buckets_are_cumulative_and_end_in_inf)
{
	char	*text;

	text = text_of("{\"wait_seconds\":{\"local\":{\"buckets\":"
	    "[[0.001,2],[0.1,5],[1,5]],\"count\":7,\"sum\":9.25}}}",
	    PROTO_METRICS_PROMETHEUS);
	expect_line(text, "# TYPE locksd_wait_seconds histogram");
	expect_line(text,
	    "locksd_wait_seconds_bucket{scope=\"local\",le=\"0.001\"} 2");
	expect_line(text,
	    "locksd_wait_seconds_bucket{scope=\"local\",le=\"0.1\"} 5");
	expect_line(text,
	    "locksd_wait_seconds_bucket{scope=\"local\",le=\"1\"} 5");
	expect_line(text,
	    "locksd_wait_seconds_bucket{scope=\"local\",le=\"+Inf\"} 7");
	expect_line(text, "locksd_wait_seconds_sum{scope=\"local\"} 9.25");
	expect_line(text, "locksd_wait_seconds_count{scope=\"local\"} 7");
	ck_assert_uint_eq(count_prefix(text, "locksd_wait_seconds_bucket"), 4);
	free(text);
}
END_TEST

START_TEST(test_text_names_counters_as_each_format_wants)
{
	const char	*json = "{\"grants_total\":{\"local\":{\"exclusive\":3,"
	    "\"shared\":1}},\"connections\":2}";
	char		*prom, *om;

	prom = text_of(json, PROTO_METRICS_PROMETHEUS);
	om = text_of(json, PROTO_METRICS_OPENMETRICS);
	expect_line(prom, "# TYPE locksd_grants_total counter");
	expect_line(om, "# TYPE locksd_grants counter");
	expect_line(om, "# HELP locksd_grants Grants, by scope and mode.");
	/* The samples carry _total in both. */
	expect_line(prom,
	    "locksd_grants_total{scope=\"local\",mode=\"exclusive\"} 3");
	expect_line(om,
	    "locksd_grants_total{scope=\"local\",mode=\"shared\"} 1");
	expect_line(om, "# TYPE locksd_connections gauge");
	expect_line(om, "locksd_connections 2");
	ck_assert_msg(strcmp(prom + strlen(prom) - 6, "# EOF\n") == 0, "%s",
	    prom);
	ck_assert_msg(strcmp(om + strlen(om) - 6, "# EOF\n") == 0, "%s", om);
	free(prom);
	free(om);
}
END_TEST

START_TEST(test_text_leaves_out_unknown_keys_and_bad_values)
{
	struct json_object	*arr = json_object_new_array();
	char			*text;

	text = text_of("{\"from_the_future\":1,\"connections\":\"many\","
	    "\"locks_held\":{\"local\":[1]},\"waiters\":{\"local\":4}}",
	    PROTO_METRICS_PROMETHEUS);
	ck_assert_ptr_null(strstr(text, "future"));
	ck_assert_uint_eq(count_prefix(text, "locksd_connections "), 0);
	ck_assert_uint_eq(count_prefix(text, "locksd_locks_held{"), 0);
	expect_line(text, "locksd_waiters{scope=\"local\"} 4");
	free(text);
	ck_assert_ptr_null(proto_metrics_text(arr, PROTO_METRICS_PROMETHEUS,
	    NULL));
	json_object_put(arr);
}
END_TEST

START_TEST(test_observe_counts_each_value_in_the_bucket_of_its_bound)
{
	struct metrics_hist	 h;

	memset(&h, 0, sizeof h);
	metrics_observe(&h, 0);
	metrics_observe(&h, proto_metrics_bounds[0]);	/* le: inclusive */
	metrics_observe(&h, 0.002);
	metrics_observe(&h, 1e6);
	ck_assert_uint_eq(h.bucket[0], 2);
	ck_assert_uint_eq(h.bucket[3], 1);		/* 0.005 */
	ck_assert(proto_metrics_bounds[3] == 0.005);
	ck_assert_uint_eq(h.bucket[PROTO_METRICS_BUCKETS], 1);
	ck_assert(h.sum == 0 + proto_metrics_bounds[0] + 0.002 + 1e6);
}
END_TEST

/* The metrics object of a status with "metrics":true, asked on c. */
static struct json_object *
metrics(struct h_conn *c)
{
	struct json_object	*r, *m;

	r = h_request(c, "{\"id\":\"m\",\"op\":\"status\",\"metrics\":true}");
	EXPECT_OK(r);
	m = h_get(r, "metrics");
	ck_assert_msg(json_object_is_type(m, json_type_object),
	    "no metrics object: %s", h_json(r));
	return m;
}

/* A number two levels down the metrics object: m[a][b]. */
static int64_t
at(struct json_object *m, const char *a, const char *b)
{
	return h_int(h_get(m, a), b);
}

/* The grants of a mode, locally. */
static int64_t
grants(struct json_object *m, const char *mode)
{
	return h_int(h_get(h_get(m, "grants_total"), "local"), mode);
}

/* A histogram's count, locally. */
static int64_t
hist_count(struct json_object *m, const char *key)
{
	return h_int(h_get(h_get(m, key), "local"), "count");
}

/* Wait until m[a][b] reaches want, asking again on c; the last metrics. */
static struct json_object *
metrics_until(struct h_conn *c, const char *a, const char *b, int64_t want)
{
	struct json_object	*m;
	double			 end = h_now() + h_slow(5);

	for (;;) {
		m = metrics(c);
		if ((b != NULL ? at(m, a, b) : h_int(m, a)) == want ||
		    h_now() > end)
			return m;
		h_sleep(0.02);
	}
}

START_TEST(test_counters_move_with_grants_waits_timeouts_and_cancels)
{
	struct h_conn		*c1, *c2, *c3, *obs;
	struct json_object	*m, *busiest, *r;

	h_own_daemon_start();
	obs = h_connect();
	c1 = h_connect();
	c2 = h_connect();
	c3 = h_connect();
	h_take(c1, "mx-a", "exclusive");
	h_take(c1, "mx-s", "shared");
	h_queue(c2, "mx-a", "exclusive", 2, "second");
	EXPECT_ERROR(h_request(c3, "{\"op\":\"acquire\",\"id\":3,"
	    "\"name\":\"mx-a\",\"timeout\":0}"), "timeout");
	r = h_request(c3, "{\"op\":\"acquire\",\"id\":4,\"name\":\"mx-a\","
	    "\"timeout\":0.2}");
	EXPECT_BLOCKING(r);
	EXPECT_ERROR(h_recv(c3, h_slow(5)), "timeout");

	m = metrics(obs);
	ck_assert_int_eq(h_int(m, "connections"), 4);
	/* The harness connected before, to see the daemon listen. */
	ck_assert_int_ge(h_int(m, "connections_accepted_total"), 4);
	ck_assert_int_eq(at(m, "locks_held", "local"), 2);
	ck_assert_int_eq(at(m, "waiters", "local"), 1);
	ck_assert_int_eq(at(m, "contended_locks", "local"), 1);
	ck_assert_int_eq(grants(m, "exclusive"), 1);
	ck_assert_int_eq(grants(m, "shared"), 1);
	ck_assert_int_eq(at(m, "timeouts_total", "local"), 2);
	ck_assert_int_eq(at(m, "errors_total", "timeout"), 2);
	ck_assert_int_eq(hist_count(m, "wait_seconds"), 2);
	ck_assert_int_eq(hist_count(m, "hold_seconds"), 0);
	busiest = h_get(m, "busiest");
	ck_assert_uint_eq(json_object_array_length(busiest), 1);
	ck_assert_str_eq(h_str(h_idx(busiest, 0), "name"), "mx-a");
	ck_assert_int_eq(h_int(h_idx(busiest, 0), "waiters"), 1);
	ck_assert_int_eq(h_int(h_idx(busiest, 0), "holders"), 1);
	ck_assert(h_num(h_idx(busiest, 0), "oldest_wait_seconds") >= 0);

	/* A release of the wait cancels it. */
	EXPECT_ERROR(h_request(c2, "{\"op\":\"release\",\"id\":\"r\","
	    "\"name\":\"mx-a\"}"), "cancelled");
	EXPECT_OK(h_recv(c2, h_slow(5)));
	m = metrics(obs);
	ck_assert_int_eq(at(m, "cancellations_total", "release"), 1);
	ck_assert_int_eq(at(m, "errors_total", "cancelled"), 1);
	ck_assert_int_eq(at(m, "waiters", "local"), 0);
	ck_assert_uint_eq(json_object_array_length(h_get(m, "busiest")), 0);

	/* A handoff: one hold ends, one wait is granted after a while. */
	h_queue(c2, "mx-a", "exclusive", 5, "again");
	h_sleep(0.05);
	h_drop(c1, "mx-a");
	h_granted(c2, 5, 5);
	m = metrics(obs);
	ck_assert_int_eq(grants(m, "exclusive"), 2);
	ck_assert_int_eq(hist_count(m, "hold_seconds"), 1);
	ck_assert_int_eq(hist_count(m, "wait_seconds"), 3);
	ck_assert(h_num(h_get(h_get(m, "wait_seconds"), "local"), "sum") >=
	    0.04);

	/* A waiter whose connection closes is cancelled by it. */
	h_queue(c3, "mx-a", "exclusive", 6, "leaves");
	h_conn_close(c3);
	m = metrics_until(obs, "cancellations_total", "disconnect", 1);
	ck_assert_int_eq(at(m, "cancellations_total", "disconnect"), 1);
	m = metrics_until(obs, "connections", NULL, 3);
	ck_assert_int_eq(h_int(m, "connections"), 3);
	h_own_daemon_stop();
}
END_TEST

START_TEST(test_status_is_unchanged_unless_metrics_are_asked)
{
	struct h_conn		*c;
	struct json_object	*r;

	h_own_daemon_start();
	c = h_connect();
	r = h_request(c, "{\"id\":1,\"op\":\"status\"}");
	EXPECT_OK(r);
	ck_assert_msg(h_get(r, "metrics") == NULL, "%s", h_json(r));
	ck_assert_int_eq(h_int(r, "connections"), 1);
	r = h_request(c, "{\"id\":2,\"op\":\"status\",\"metrics\":false}");
	ck_assert_msg(h_get(r, "metrics") == NULL, "%s", h_json(r));
	/* The json-c path too: an id the fast path leaves to it. */
	r = h_request(c, "{\"id\":[],\"op\":\"status\",\"metrics\":true}");
	EXPECT_ERROR(r, "bad_request");
	r = h_request(c, "{\"id\":1.5,\"op\":\"status\",\"metrics\":true}");
	ck_assert_msg(json_object_is_type(h_get(r, "metrics"),
	    json_type_object), "%s", h_json(r));
	r = h_request(c, "{\"id\":3,\"op\":\"status\",\"metrics\":1}");
	EXPECT_ERROR(r, "bad_request");
	ck_assert_str_eq(h_str(h_get(r, "error"), "message"),
	    "metrics must be a boolean");
	h_own_daemon_stop();
}
END_TEST

#define MANY_NAMES	1000

START_TEST(test_per_name_series_stay_bounded_with_a_thousand_names)
{
	struct h_conn		*holder, *waiter, *more[3], *obs;
	struct json_object	*m, *busiest, *r;
	locks_conn		*lib;
	locks_metrics		*lm;
	const char		*text;
	size_t			 i;

	h_own_daemon_start();
	holder = h_connect();
	waiter = h_connect();
	obs = h_connect();
	for (i = 0; i < MANY_NAMES; i++)
		ck_assert_int_eq(h_send(holder, "{\"op\":\"acquire\",\"id\":%zu,"
		    "\"name\":\"many-%zu\",\"timeout\":0}", i, i), 0);
	for (i = 0; i < MANY_NAMES; i++) {
		r = h_recv(holder, h_slow(5));
		EXPECT_OK(r);
	}
	/* Waits on every name, told nothing (notify_after: never). */
	for (i = 0; i < MANY_NAMES; i++)
		ck_assert_int_eq(h_send(waiter, "{\"op\":\"acquire\",\"id\":%zu,"
		    "\"name\":\"many-%zu\",\"notify_after\":1e9}", i, i), 0);
	/* many-7 has the longest queue: it is named first. */
	for (i = 0; i < 3; i++) {
		more[i] = h_connect();
		ck_assert_int_eq(h_send(more[i], "{\"op\":\"acquire\",\"id\":1,"
		    "\"name\":\"many-7\",\"notify_after\":1e9}"), 0);
	}
	m = metrics_until(obs, "waiters", "local", MANY_NAMES + 3);
	ck_assert_int_eq(at(m, "waiters", "local"), MANY_NAMES + 3);
	ck_assert_int_eq(at(m, "contended_locks", "local"), MANY_NAMES);
	busiest = h_get(m, "busiest");
	ck_assert_uint_eq(json_object_array_length(busiest),
	    PROTO_METRICS_BUSIEST);
	ck_assert_str_eq(h_str(h_idx(busiest, 0), "name"), "many-7");
	ck_assert_int_eq(h_int(h_idx(busiest, 0), "waiters"), 4);
	/* The rest: one waiter each, the longest waits first. */
	for (i = 1; i < PROTO_METRICS_BUSIEST; i++) {
		ck_assert_int_eq(h_int(h_idx(busiest, i), "waiters"), 1);
		ck_assert(h_num(h_idx(busiest, i), "oldest_wait_seconds") <=
		    h_num(h_idx(busiest, i - 1), "oldest_wait_seconds") ||
		    i == 1);
	}

	/* And the text through liblocks: ten series per per-name family. */
	lib = h_lib_conn(h_srv.socket_path);
	ck_assert_int_eq(locks_metrics_get(lib, &lm), LOCKS_OK);
	ck_assert_ptr_nonnull(text = locks_metrics_text(lm,
	    LOCKS_METRICS_PROMETHEUS));
	ck_assert_uint_eq(count_prefix(text, "locksd_lock_waiters{"),
	    PROTO_METRICS_BUSIEST);
	ck_assert_uint_eq(count_prefix(text, "locksd_lock_holders{"),
	    PROTO_METRICS_BUSIEST);
	ck_assert_uint_eq(count_prefix(text, "locksd_lock_oldest_wait_seconds{"),
	    PROTO_METRICS_BUSIEST);
	expect_line(text, "locksd_lock_waiters{scope=\"local\","
	    "name=\"many-7\"} 4");
	ck_assert_ptr_nonnull(strstr(locks_metrics_json(lm),
	    "\"busiest\":[{\"name\":\"many-7\""));
	locks_metrics_free(lm);
	locks_close(lib);
	h_own_daemon_stop();
}
END_TEST

START_TEST(test_refused_connections_are_counted_by_reason)
{
	struct json_object	*m;
	struct h_conn		*c, *refused;
	static const char *const opts[] = { "--max-clients", "1" };
	int64_t			 before, accepted;
	double			 end;

	memset(&h_srv, 0, sizeof h_srv);
	h_srv.extra[0] = opts[0];
	h_srv.extra[1] = opts[1];
	ck_assert_msg(h_daemon_start(&h_srv) == 0, "%s", h_error());
	/* The harness's probe may not have left yet: then c is refused. */
	for (end = h_now() + h_slow(5);; h_sleep(0.05)) {
		c = h_connect();
		if (h_ok(h_request(c, "{\"op\":\"ping\"}")) || h_now() > end)
			break;
		h_conn_close(c);
	}
	m = metrics(c);
	/* The harness's own probes may have been refused already. */
	before = at(m, "connections_refused_total", "max_clients");
	accepted = h_int(m, "connections_accepted_total");
	refused = h_connect();
	EXPECT_ERROR(h_recv(refused, h_slow(5)), "limit");
	m = metrics(c);
	ck_assert_int_eq(at(m, "connections_refused_total", "max_clients"),
	    before + 1);
	ck_assert_int_eq(at(m, "connections_refused_total", "not_allowed"), 0);
	ck_assert_int_eq(h_int(m, "connections_accepted_total"), accepted);
	h_own_daemon_stop();
}
END_TEST

#define THROTTLE_REQUESTS	1500

START_TEST(test_a_client_that_reads_nothing_shows_as_throttled)
{
	static char		 buf[THROTTLE_REQUESTS * 64];
	struct h_conn		*deaf, *obs;
	struct json_object	*m;
	size_t			 i, len = 0;

	h_own_daemon_start();
	deaf = h_connect();
	obs = h_connect();
	/*
	 * 1,500 replies of about 2.5 kB each: past the 1 MiB bound.  In one
	 * write, as the socket holds few separate writes the daemon stops
	 * reading.
	 */
	for (i = 0; i < THROTTLE_REQUESTS; i++)
		len += (size_t)snprintf(buf + len, sizeof buf - len,
		    "{\"id\":%zu,\"op\":\"status\",\"metrics\":true}\n", i);
	ck_assert_uint_lt(len, sizeof buf);
	ck_assert_int_eq(h_send_raw(deaf, buf, len), 0);
	m = metrics_until(obs, "throttled_connections", NULL, 1);
	ck_assert_int_eq(h_int(m, "throttled_connections"), 1);
	ck_assert_int_ge(h_int(m, "throttled_bytes"), 1024 * 1024);
	ck_assert_int_ge(h_int(m, "throttle_events_total"), 1);
	h_own_daemon_stop();
}
END_TEST

/* A directory of its own for a metrics file, in the run's. */
static void
metrics_dir(char *dir, size_t size)
{
	snprintf(dir, size, "%s/metrics-XXXXXX", h_run_dir());
	ck_assert_ptr_nonnull(mkdtemp(dir));
}

/*
 * Start the test's daemon with --metrics-file locksd.prom in a directory
 * of its own, rewritten every second; the directory and file in dir, path.
 */
static void
metrics_file_daemon(char *dir, size_t dir_size, char *path,
    size_t path_size)
{
	metrics_dir(dir, dir_size);
	snprintf(path, path_size, "%s/locksd.prom", dir);
	memset(&h_srv, 0, sizeof h_srv);
	h_srv.extra[0] = "--metrics-file";
	h_srv.extra[1] = path;
	h_srv.extra[2] = "--metrics-interval";
	h_srv.extra[3] = "1";
	ck_assert_msg(h_daemon_start(&h_srv) == 0, "%s", h_error());
}

/* Read path whole; 1 if it is a complete metrics text. */
static int
file_whole(const char *path, char *buf, size_t size)
{
	size_t	 n;

	buf[0] = '\0';
	if (h_slurp(path, buf, size) == -1)
		return 0;
	n = strlen(buf);
	return n > 6 && strncmp(buf, "# HELP ", 7) == 0 &&
	    strcmp(buf + n - 6, "# EOF\n") == 0;
}

START_TEST(test_metrics_file_is_rewritten_and_always_whole)
{
	static char	 buf[256 * 1024];
	char		 dir[256], path[512];
	struct stat	 sb;
	struct h_conn	*c;
	struct dirent	*de;
	DIR		*d;
	double		 end;
	int		 reads = 0, seen_held = 0;

	metrics_file_daemon(dir, sizeof dir, path, sizeof path);
	/* Written before the daemon answers. */
	ck_assert_msg(file_whole(path, buf, sizeof buf), "%s", buf);
	ck_assert_int_eq(stat(path, &sb), 0);
	ck_assert_int_eq(sb.st_mode & 0777, 0644);
	expect_line(buf, "locksd_locks_held{scope=\"local\"} 0");
	c = h_connect();
	h_take(c, "mf-a", "exclusive");
	/* Read it over and over while it is replaced: never a part. */
	for (end = h_now() + h_slow(4); h_now() < end && !seen_held;
	    reads++) {
		ck_assert_msg(file_whole(path, buf, sizeof buf),
		    "read %d is not whole: %s", reads, buf);
		seen_held = strstr(buf, "\nlocksd_locks_held{scope=\"local\"} "
		    "1\n") != NULL;
	}
	ck_assert_msg(seen_held, "the file was not rewritten: %s", buf);
	/* No temp file is left behind once it is in place. */
	ck_assert_ptr_nonnull(d = opendir(dir));
	while ((de = readdir(d)) != NULL)
		ck_assert_msg(strcmp(de->d_name, ".") == 0 ||
		    strcmp(de->d_name, "..") == 0 ||
		    strcmp(de->d_name, "locksd.prom") == 0 ||
		    strncmp(de->d_name, ".locksd.prom.", 13) == 0,
		    "a stray file %s", de->d_name);
	closedir(d);
	h_own_daemon_stop();
}
END_TEST

START_TEST(test_metrics_file_in_a_missing_directory_stops_the_start)
{
	char	 dir[256], path[512], log[4096];
	pid_t	 pid;
	int	 status;

	metrics_dir(dir, sizeof dir);
	snprintf(path, sizeof path, "%s/no-such-dir/locksd.prom", dir);
	memset(&h_srv, 0, sizeof h_srv);
	ck_assert_int_eq(h_daemon_paths(&h_srv, dir), 0);
	h_srv.extra[0] = "--metrics-file";
	h_srv.extra[1] = path;
	ck_assert_int_ne(pid = h_daemon_spawn(&h_srv), -1);
	ck_assert_msg(h_wait_exit(pid, h_slow(H_START_SECS), &status) == 0,
	    "locksd started with a metrics file it cannot write");
	ck_assert(WIFEXITED(status) && WEXITSTATUS(status) != 0);
	h_slurp(h_srv.log_path, log, sizeof log);
	ck_assert_msg(strstr(log, "cannot write the metrics file ") != NULL &&
	    strstr(log, path) != NULL && strstr(log, "must exist") != NULL,
	    "%s", log);
}
END_TEST

/* Wait up to 5 s for the daemon's log, read into log, to say text. */
static int
log_says(const char *text, char *log, size_t size)
{
	double	 end = h_now() + h_slow(5);

	for (;;) {
		log[0] = '\0';
		h_slurp(h_srv.log_path, log, size);
		if (strstr(log, text) != NULL)
			return 1;
		if (h_now() > end)
			return 0;
		h_sleep(0.1);
	}
}

START_TEST(test_metrics_file_that_cannot_be_written_later_is_logged)
{
	char		 dir[256], path[512], log[8192];
	struct h_conn	*c;

	metrics_file_daemon(dir, sizeof dir, path, sizeof path);
	ck_assert_int_eq(unlink(path), 0);
	ck_assert_int_eq(rmdir(dir), 0);
	ck_assert_msg(log_says("cannot write the metrics file ", log,
	    sizeof log) && strstr(log, path) != NULL, "not logged: %s", log);
	/* The daemon goes on serving. */
	c = h_connect();
	EXPECT_OK(h_request(c, "{\"op\":\"ping\"}"));
	/* And writes again, saying so, once it can. */
	ck_assert_int_eq(mkdir(dir, 0755), 0);
	ck_assert_msg(log_says("wrote the metrics file ", log, sizeof log),
	    "%s", log);
	ck_assert_int_eq(access(path, R_OK), 0);
	h_own_daemon_stop();
}
END_TEST

static Suite *
metrics_suite(void)
{
	Suite	*s = suite_create("metrics");
	TCase	*tc;

	tc = h_tcase("text", 30);
	tcase_add_test(tc, test_text_escapes_label_values);
	tcase_add_test(tc,
	    test_text_shows_bytes_that_are_not_utf8_as_question_marks);
	tcase_add_test(tc,
	    test_text_histogram_buckets_are_cumulative_and_end_in_inf);
	tcase_add_test(tc, test_text_names_counters_as_each_format_wants);
	tcase_add_test(tc, test_text_leaves_out_unknown_keys_and_bad_values);
	tcase_add_test(tc,
	    test_observe_counts_each_value_in_the_bucket_of_its_bound);
	suite_add_tcase(s, tc);

	tc = h_tcase("daemon", 120);
	tcase_add_test(tc,
	    test_counters_move_with_grants_waits_timeouts_and_cancels);
	tcase_add_test(tc, test_status_is_unchanged_unless_metrics_are_asked);
	tcase_add_test(tc,
	    test_per_name_series_stay_bounded_with_a_thousand_names);
	tcase_add_test(tc, test_refused_connections_are_counted_by_reason);
	tcase_add_test(tc, test_a_client_that_reads_nothing_shows_as_throttled);
	suite_add_tcase(s, tc);

	tc = h_tcase("file", 60);
	tcase_add_test(tc, test_metrics_file_is_rewritten_and_always_whole);
	tcase_add_test(tc,
	    test_metrics_file_in_a_missing_directory_stops_the_start);
	tcase_add_test(tc,
	    test_metrics_file_that_cannot_be_written_later_is_logged);
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	return h_run_suite(metrics_suite());
}
