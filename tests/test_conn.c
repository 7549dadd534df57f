/*
 * conn.c in-process: a daemon with no listening socket, its connections
 * made with session_new over socketpairs, and the event loop run by hand.
 * The unread-output bound is set small here, so a modest reply crosses it
 * while the socket still takes the whole reply in one write.  The token
 * reserve is small in the tokens case, so a test reaches the saved
 * ceiling in a few grants.
 */

#include <sys/socket.h>
#include <sys/stat.h>

#include <check.h>
#include <dirent.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/event.h>

#include "daemon.h"
#include "unit.h"

#define OUTPUT_HIGH_TEST	4096	/* a list of 300 locks is far over it */
#define NLOCKS			300
#define LOOP_PASSES		200	/* enough for anything pending */
#define TOKEN_RESERVE_TEST	10	/* tokens saved ahead on disk */

static struct event_base	*base;
static struct server		*srv;
static char			 lock_dir[64];

/*
 * Start the in-process daemon, with an unread-output bound of output_high
 * bytes and token_reserve tokens saved ahead (0: the defaults).
 */
static void
setup_with(size_t output_high, int64_t token_reserve)
{
	struct server_config	 config;

	log_init(0);
	snprintf(lock_dir, sizeof lock_dir, "%s/conn-XXXXXX", TEST_TMPDIR);
	ck_assert_ptr_nonnull(mkdtemp(lock_dir));
	memset(&config, 0, sizeof config);
	config.lock_dir = lock_dir;
	config.max_locks_per_client = 4096;
	config.max_clients = 16;
	config.output_high = output_high;
	config.token_reserve = token_reserve;
	ck_assert_ptr_nonnull(base = event_base_new());
	ck_assert_ptr_nonnull(srv = server_new(base, &config));
}

static void
setup(void)
{
	setup_with(OUTPUT_HIGH_TEST, 0);
}

/* The default bound, far above what the fairness test's replies need. */
static void
setup_default_bound(void)
{
	setup_with(0, 0);
}

static void
setup_small_reserve(void)
{
	setup_with(OUTPUT_HIGH_TEST, TOKEN_RESERVE_TEST);
}

static void
teardown(void)
{
	struct dirent	*de;
	DIR		*dir;

	server_free(srv);
	event_base_free(base);
	if ((dir = opendir(lock_dir)) == NULL)
		return;
	while ((de = readdir(dir)) != NULL)
		if (unlinkat(dirfd(dir), de->d_name, 0) == -1)
			unlinkat(dirfd(dir), de->d_name, AT_REMOVEDIR);
	closedir(dir);
	rmdir(lock_dir);
}

/* A connection into the daemon; returns the client's end. */
static int
client_new(void)
{
	struct peer	 peer = { getpid(), getuid(), getgid() };
	int		 pair[2];

	ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK |
	    SOCK_CLOEXEC, 0, pair), 0);
	ck_assert_ptr_nonnull(session_new(server_sessions(srv), pair[1], &peer,
	    0));
	return pair[0];
}

static void
client_send(int fd, const char *text)
{
	ck_assert_int_eq(write(fd, text, strlen(text)), (ssize_t)strlen(text));
}

/*
 * Run the loop until the client has read n more lines (or the loop has
 * nothing left to do); returns the lines read, the last one in last.
 */
static int
client_read_lines(int fd, int n, char *last, size_t size)
{
	static char	 buf[1 << 16];
	char		 line[512];
	size_t		 len = 0;
	ssize_t		 got, i;
	int		 lines = 0, pass;

	for (pass = 0; pass < LOOP_PASSES && lines < n; pass++) {
		event_base_loop(base, EVLOOP_NONBLOCK);
		while ((got = read(fd, buf, sizeof buf)) > 0) {
			for (i = 0; i < got; i++) {
				if (buf[i] != '\n') {
					if (len < sizeof line - 1)
						line[len++] = buf[i];
					continue;
				}
				line[len] = '\0';
				snprintf(last, size, "%s", line);
				len = 0;
				lines++;
			}
		}
	}
	return lines;
}

/* Hold NLOCKS names on fd, so that a list reply is over the bound. */
static void
hold_many(int fd)
{
	char	 line[128], last[512];
	int	 i;

	for (i = 0; i < NLOCKS; i++) {
		snprintf(line, sizeof line, "{\"id\":%d,\"op\":\"acquire\","
		    "\"name\":\"conn-test-lock-%03d\",\"owner\":\"test\"}\n",
		    i, i);
		client_send(fd, line);
		ck_assert_int_eq(client_read_lines(fd, 1, last, sizeof last),
		    1);
		ck_assert_msg(strstr(last, "\"ok\":true") != NULL, "%s", last);
	}
}

/* Close fd and check the daemon freed its connection and its locks. */
static void
client_close_and_check(int fd)
{
	int	 pass;

	close(fd);
	for (pass = 0; pass < LOOP_PASSES &&
	    server_nconns(srv) > 0; pass++)
		event_base_loop(base, EVLOOP_NONBLOCK);
	ck_assert_msg(server_nconns(srv) == 0,
	    "the connection was never freed");
	ck_assert_uint_eq(locktab_nheld(server_locktab(srv)), 0);
}

/*
 * A reply over the bound throttles the connection; when the socket takes
 * it all at once, the daemon must still resume reading, answer the next
 * request, and notice the close.
 */
START_TEST(test_throttled_connection_resumes_when_output_drains)
{
	char	 last[512];
	int	 fd = client_new();

	hold_many(fd);
	client_send(fd, "{\"id\":\"L\",\"op\":\"list\"}\n");
	ck_assert_int_eq(client_read_lines(fd, 1, last, sizeof last), 1);
	client_send(fd, "{\"id\":\"P\",\"op\":\"ping\"}\n");
	ck_assert_int_eq(client_read_lines(fd, 1, last, sizeof last), 1);
	ck_assert_str_eq(last, "{\"id\":\"P\",\"ok\":true}");
	client_close_and_check(fd);
}
END_TEST

/* The same with the next request already waiting behind the big one. */
START_TEST(test_pipelined_request_behind_a_big_reply_is_answered)
{
	char	 last[512];
	int	 fd = client_new();

	hold_many(fd);
	client_send(fd, "{\"id\":\"L\",\"op\":\"list\"}\n"
	    "{\"id\":\"P\",\"op\":\"ping\"}\n");
	ck_assert_int_eq(client_read_lines(fd, 2, last, sizeof last), 2);
	ck_assert_str_eq(last, "{\"id\":\"P\",\"ok\":true}");
	client_close_and_check(fd);
}
END_TEST

/* Count the lines the daemon has written to fd so far, without the loop. */
static int
client_count_lines(int fd)
{
	char	 buf[1 << 16];
	ssize_t	 got, i;
	int	 lines = 0;

	while ((got = read(fd, buf, sizeof buf)) > 0) {
		for (i = 0; i < got; i++)
			lines += buf[i] == '\n';
	}
	return lines;
}

/*
 * One client pipelining many requests gets a bounded share of a loop
 * pass: another client is answered in the same pass, and the pipeline is
 * still answered whole, in order, over the following passes.
 */
START_TEST(test_a_long_pipeline_is_served_a_share_per_pass)
{
	static char	 pipeline[1000 * 40];
	char		 last[512];
	size_t		 len = 0;
	int		 a = client_new(), b = client_new(), i, got;

	for (i = 0; i < 1000; i++)
		len += snprintf(pipeline + len, sizeof pipeline - len,
		    "{\"id\":%d,\"op\":\"ping\"}\n", i);
	client_send(a, pipeline);
	client_send(b, "{\"id\":\"B\",\"op\":\"ping\"}\n");
	event_base_loop(base, EVLOOP_ONCE | EVLOOP_NONBLOCK);
	got = client_count_lines(a);
	ck_assert_int_gt(got, 0);
	ck_assert_int_lt(got, 1000);
	ck_assert_int_eq(client_count_lines(b), 1);
	ck_assert_int_eq(client_read_lines(a, 1000 - got, last, sizeof last),
	    1000 - got);
	ck_assert_str_eq(last, "{\"id\":999,\"ok\":true}");
	close(b);
	client_close_and_check(a);
}
END_TEST

/* Run the loop for up to secs until fd has a line; 1 and it, or 0. */
static int
client_wait_line(int fd, double secs, char *last, size_t size)
{
	int	 i;

	for (i = 0; i < secs * 100; i++) {
		if (client_read_lines(fd, 1, last, size) == 1)
			return 1;
		usleep(10000);
	}
	return 0;
}

/* The token in a grant line, or 0. */
static int64_t
line_token(const char *line)
{
	const char	*p = strstr(line, "\"token\":");
	int64_t		 token = 0;

	if (p != NULL)
		sscanf(p + strlen("\"token\":"), "%" SCNd64, &token);
	return token;
}

/* The token ceiling saved in the lock dir. */
static int64_t
saved_ceiling(void)
{
	char	 path[128];
	int64_t	 ceiling = 0;
	FILE	*fp;

	snprintf(path, sizeof path, "%s/.tokens", lock_dir);
	ck_assert_ptr_nonnull(fp = fopen(path, "r"));
	ck_assert_int_eq(fscanf(fp, "%" SCNd64, &ceiling), 1);
	fclose(fp);
	return ceiling;
}

/* Plant (or remove) a directory where .tokens is written first. */
static void
plant_tokens_tmp(int plant)
{
	char	 path[128];

	snprintf(path, sizeof path, "%s/.tokens.tmp", lock_dir);
	if (plant)
		ck_assert_int_eq(mkdir(path, 0755), 0);
	else
		ck_assert_int_eq(rmdir(path), 0);
}

/* Send one request on fd and return its reply line in last. */
static void
client_request(int fd, const char *req, char *last, size_t size)
{
	client_send(fd, req);
	ck_assert_int_eq(client_read_lines(fd, 1, last, size), 1);
}

/*
 * While the ceiling cannot be saved, grants go on up to the saved ceiling
 * and then acquire gets internal, saying why; a queued waiter stays
 * queued.  Once a save succeeds (on the next tick), the waiter is granted
 * and acquires succeed again, tokens still rising and under the ceiling.
 */
START_TEST(test_acquire_past_an_unsaved_token_ceiling_is_internal_until_saved)
{
	char	 last[512];
	int64_t	 ceiling = saved_ceiling(), t, prev;
	int	 a = client_new(), b = client_new(), i;

	plant_tokens_tmp(1);
	client_request(a, "{\"id\":0,\"op\":\"acquire\",\"name\":\"tk-w\"}\n",
	    last, sizeof last);
	ck_assert_msg(strstr(last, "\"ok\":true") != NULL, "%s", last);
	prev = line_token(last);
	client_send(b, "{\"id\":\"b\",\"op\":\"acquire\",\"name\":\"tk-w\","
	    "\"notify_after\":600}\n");
	for (i = 0; i <= TOKEN_RESERVE_TEST; i++) {
		client_request(a, "{\"id\":1,\"op\":\"acquire\","
		    "\"name\":\"tk-n\",\"timeout\":0}\n", last, sizeof last);
		if (strstr(last, "\"ok\":true") == NULL)
			break;
		t = line_token(last);
		ck_assert_int_gt(t, prev);
		ck_assert_int_le(t, ceiling);
		prev = t;
		client_request(a, "{\"id\":2,\"op\":\"release\","
		    "\"name\":\"tk-n\"}\n", last, sizeof last);
	}
	/* Every token up to the ceiling went out, and none past it. */
	ck_assert_int_eq(prev, ceiling);
	ck_assert_int_eq(saved_ceiling(), ceiling);
	ck_assert_msg(strstr(last, "\"code\":\"internal\"") != NULL &&
	    strstr(last, "cannot save the token ceiling") != NULL &&
	    strstr(last, "/.tokens.tmp: Is a directory") != NULL, "%s", last);
	/* Still so after a tick, and the waiter is not granted either. */
	client_request(a, "{\"id\":2,\"op\":\"release\",\"name\":\"tk-w\"}\n",
	    last, sizeof last);
	ck_assert_int_eq(client_wait_line(b, 1.5, last, sizeof last), 0);
	client_request(a, "{\"id\":3,\"op\":\"acquire\",\"name\":\"tk-n\","
	    "\"timeout\":0}\n", last, sizeof last);
	ck_assert_msg(strstr(last, "\"code\":\"internal\"") != NULL, "%s",
	    last);

	/* A save succeeds: the waiter first, then new acquires. */
	plant_tokens_tmp(0);
	ck_assert_int_eq(client_wait_line(b, 3, last, sizeof last), 1);
	ck_assert_msg(strstr(last, "\"id\":\"b\"") != NULL &&
	    strstr(last, "\"ok\":true") != NULL, "%s", last);
	ck_assert_int_gt(t = line_token(last), prev);
	ck_assert_int_le(t, saved_ceiling());
	prev = t;
	client_request(a, "{\"id\":4,\"op\":\"acquire\",\"name\":\"tk-n\","
	    "\"timeout\":0}\n", last, sizeof last);
	ck_assert_msg(strstr(last, "\"ok\":true") != NULL, "%s", last);
	ck_assert_int_gt(t = line_token(last), prev);
	ck_assert_int_le(t, saved_ceiling());
	close(b);
	client_close_and_check(a);
}
END_TEST

static Suite *
conn_suite(void)
{
	Suite	*s = suite_create("conn");
	TCase	*tc = tcase_create("throttle");

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, test_throttled_connection_resumes_when_output_drains);
	tcase_add_test(tc,
	    test_pipelined_request_behind_a_big_reply_is_answered);
	suite_add_tcase(s, tc);
	tc = tcase_create("fairness");
	tcase_add_checked_fixture(tc, setup_default_bound, teardown);
	tcase_add_test(tc, test_a_long_pipeline_is_served_a_share_per_pass);
	suite_add_tcase(s, tc);

	tc = tcase_create("tokens");
	tcase_add_checked_fixture(tc, setup_small_reserve, teardown);
	tcase_add_test(tc,
	    test_acquire_past_an_unsaved_token_ceiling_is_internal_until_saved);
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	return unit_run_suite(conn_suite());
}
