/*
 * conn.c in-process: a daemon with no listening socket, its connections
 * made with conn_new over socketpairs, and the event loop run by hand.
 * The unread-output bound is set small here, so a modest reply crosses it
 * while the socket still takes the whole reply in one write.
 */

#include <sys/socket.h>

#include <check.h>
#include <dirent.h>
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

static struct event_base	*base;
static struct server		*srv;
static char			 lock_dir[64];

/* Set up a daemon whose unread-output bound is output_high bytes. */
static void
setup_with(size_t output_high)
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
	ck_assert_ptr_nonnull(base = event_base_new());
	ck_assert_ptr_nonnull(srv = server_new(base, &config));
}

static void
setup(void)
{
	setup_with(OUTPUT_HIGH_TEST);
}

/* The default bound, far above what the fairness test's replies need. */
static void
setup_default_bound(void)
{
	setup_with(0);
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
		unlinkat(dirfd(dir), de->d_name, 0);
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
	ck_assert_ptr_nonnull(conn_new(srv, pair[1], &peer));
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
	    !TAILQ_EMPTY(server_conns(srv)); pass++)
		event_base_loop(base, EVLOOP_NONBLOCK);
	ck_assert_msg(TAILQ_EMPTY(server_conns(srv)),
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
	return s;
}

int
main(void)
{
	return unit_run_suite(conn_suite());
}
