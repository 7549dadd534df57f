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
#include <signal.h>
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

/*
 * The transport alone: a conn over a socketpair with a fake owner that
 * records what the conn hands it, and no daemon at all.
 */
#define OWNER_LINES	512
#define BIG_REPLY	(16 * 1024)

struct owner {
	struct conn	*conn;
	char		*lines[OWNER_LINES];
	size_t		 nlines;
	int		 echo;		/* reply with each line */
	size_t		 reply_size;	/* or with this many bytes */
	int		 ncloses;	/* closing callbacks */
	int		 ngone;		/* gone callbacks */
	struct owner	*forward;	/* or write each line to this one */
};

static struct owner	 owner;

static void
owner_line_cb(const char *line, size_t len, void *arg)
{
	static char	 big[BIG_REPLY];
	struct owner	*o = arg;

	ck_assert_uint_lt(o->nlines, OWNER_LINES);
	ck_assert_ptr_nonnull(o->lines[o->nlines] = strndup(line, len));
	o->nlines++;
	if (len == 3 && memcmp(line, "bye", 3) == 0) {
		conn_close_with(o->conn, PROTO_E_BAD_REQUEST, "bye asked");
		return;
	}
	if (o->forward != NULL) {
		conn_write(o->forward->conn, line, len);
		conn_write(o->forward->conn, "\n", 1);
	}
	if (o->echo) {
		conn_write(o->conn, line, len);
		conn_write(o->conn, "\n", 1);
	}
	if (o->reply_size > 0) {
		memset(big, 'r', o->reply_size - 1);
		big[o->reply_size - 1] = '\n';
		conn_write(o->conn, big, o->reply_size);
	}
}

static void
owner_closing_cb(void *arg)
{
	struct owner	*o = arg;

	o->ncloses++;
}

/* The transport is done: free it, as the freeing rule says. */
static void
owner_gone_cb(void *arg)
{
	struct owner	*o = arg;

	o->ngone++;
	conn_free(o->conn);
	o->conn = NULL;
}

static const struct conn_cb owner_cb = {
	owner_line_cb, owner_closing_cb, owner_gone_cb
};

/* A conn for o over a socketpair; returns the client's end. */
static int
owner_connect(struct owner *o, size_t output_high)
{
	int	 pair[2];

	ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK |
	    SOCK_CLOEXEC, 0, pair), 0);
	ck_assert_ptr_nonnull(o->conn = conn_new(base, pair[1], output_high,
	    &owner_cb, o));
	return pair[0];
}

static void
setup_transport(void)
{
	log_init(0);
	signal(SIGPIPE, SIG_IGN);
	memset(&owner, 0, sizeof owner);
	ck_assert_ptr_nonnull(base = event_base_new());
}

static void
owner_clear(struct owner *o)
{
	size_t	 i;

	if (o->conn != NULL)
		conn_free(o->conn);
	for (i = 0; i < o->nlines; i++)
		free(o->lines[i]);
	memset(o, 0, sizeof *o);
}

static void
teardown_transport(void)
{
	owner_clear(&owner);
	event_base_free(base);
}

/* Run the loop a few passes, for whatever is pending. */
static void
loop_passes(int passes)
{
	while (passes-- > 0)
		event_base_loop(base, EVLOOP_NONBLOCK);
}

/* Run the loop until o has n lines, or LOOP_PASSES went by. */
static void
loop_until_lines(struct owner *o, size_t n)
{
	int	 pass;

	for (pass = 0; pass < LOOP_PASSES && o->nlines < n; pass++)
		event_base_loop(base, EVLOOP_NONBLOCK);
	ck_assert_uint_eq(o->nlines, n);
}

/* Run the loop until o's conn is gone, or LOOP_PASSES went by. */
static void
loop_until_gone(struct owner *o)
{
	int	 pass;

	for (pass = 0; pass < LOOP_PASSES && o->ngone == 0; pass++)
		event_base_loop(base, EVLOOP_NONBLOCK);
	ck_assert_int_eq(o->ngone, 1);
	ck_assert_ptr_null(o->conn);
}

/* Read everything the client's end has now into buf; the byte count. */
static size_t
client_drain(int fd, char *buf, size_t size)
{
	size_t	 len = 0;
	ssize_t	 n;

	while (len < size - 1 && (n = read(fd, buf + len,
	    size - 1 - len)) > 0)
		len += (size_t)n;
	buf[len] = '\0';
	return len;
}

/* Whether the client's end sees EOF (after reading what is left). */
static int
client_sees_eof(int fd)
{
	char	 buf[4096];
	ssize_t	 n;

	while ((n = read(fd, buf, sizeof buf)) > 0)
		;
	return n == 0;
}

START_TEST(test_a_line_split_across_reads_is_handed_over_whole)
{
	int	 fd = owner_connect(&owner, OUTPUT_HIGH_TEST);

	client_send(fd, "{\"op\":");
	loop_passes(3);
	ck_assert_uint_eq(owner.nlines, 0);
	client_send(fd, "\"ping\"}\n{\"op\"");
	loop_until_lines(&owner, 1);
	ck_assert_str_eq(owner.lines[0], "{\"op\":\"ping\"}");
	client_send(fd, ":2}\n");
	loop_until_lines(&owner, 2);
	ck_assert_str_eq(owner.lines[1], "{\"op\":2}");
	close(fd);
}
END_TEST

/* Every line goes to the owner, empty ones too, in order, without \n. */
START_TEST(test_lines_of_one_read_are_handed_over_in_order)
{
	int	 fd = owner_connect(&owner, OUTPUT_HIGH_TEST);

	client_send(fd, "one\n\ntwo \nthree\n");
	loop_until_lines(&owner, 4);
	ck_assert_str_eq(owner.lines[0], "one");
	ck_assert_str_eq(owner.lines[1], "");
	ck_assert_str_eq(owner.lines[2], "two ");
	ck_assert_str_eq(owner.lines[3], "three");
	close(fd);
}
END_TEST

/* Write a line of len bytes (and its newline if nl) in pieces. */
static void
client_send_long_line(int fd, size_t len, int nl)
{
	static char	 line[PROTO_MAX_LINE + 2];

	memset(line, 'x', len);
	if (nl)
		line[len++] = '\n';
	ck_assert_int_eq(write(fd, line, len), (ssize_t)len);
}

START_TEST(test_a_line_of_the_longest_length_is_handed_over)
{
	int	 fd = owner_connect(&owner, OUTPUT_HIGH_TEST);

	client_send_long_line(fd, PROTO_MAX_LINE, 1);
	loop_until_lines(&owner, 1);
	ck_assert_uint_eq(strlen(owner.lines[0]), PROTO_MAX_LINE);
	ck_assert_int_eq(owner.ncloses, 0);
	close(fd);
}
END_TEST

/*
 * A line past the limit, even without its newline, gets one too_large
 * error; the conn says it is closing, then that it is gone.
 */
START_TEST(test_a_line_past_the_limit_closes_with_too_large)
{
	char	 buf[4096];
	int	 fd = owner_connect(&owner, OUTPUT_HIGH_TEST);

	client_send_long_line(fd, PROTO_MAX_LINE + 1, 0);
	loop_until_gone(&owner);
	ck_assert_uint_eq(owner.nlines, 0);
	ck_assert_int_eq(owner.ncloses, 1);
	client_drain(fd, buf, sizeof buf);
	ck_assert_msg(strstr(buf, "\"too_large\"") != NULL, "%s", buf);
	ck_assert_ptr_eq(strchr(buf, '\n'), buf + strlen(buf) - 1);
	ck_assert(client_sees_eof(fd));
	close(fd);
}
END_TEST

/* conn_close_with: the error goes out, no later line is handed over. */
START_TEST(test_close_with_sends_the_error_and_reads_no_more)
{
	char	 buf[4096];
	int	 fd = owner_connect(&owner, OUTPUT_HIGH_TEST);

	owner.echo = 1;
	client_send(fd, "first\nbye\nafter\n");
	loop_until_gone(&owner);
	ck_assert_uint_eq(owner.nlines, 2);
	ck_assert_int_eq(owner.ncloses, 1);
	client_drain(fd, buf, sizeof buf);
	ck_assert_msg(strncmp(buf, "first\n{", 7) == 0, "%s", buf);
	ck_assert_msg(strstr(buf, "bye asked") != NULL, "%s", buf);
	ck_assert(client_sees_eof(fd));
	close(fd);
}
END_TEST

/* A half-close: the replies to what came before it still arrive. */
START_TEST(test_replies_flush_after_the_peer_half_closes)
{
	char	 buf[4096];
	int	 fd = owner_connect(&owner, OUTPUT_HIGH_TEST);

	owner.echo = 1;
	client_send(fd, "a\nb\n");
	ck_assert_int_eq(shutdown(fd, SHUT_WR), 0);
	loop_until_gone(&owner);
	ck_assert_uint_eq(owner.nlines, 2);
	ck_assert_int_le(owner.ncloses, 1);
	client_drain(fd, buf, sizeof buf);
	ck_assert_str_eq(buf, "a\nb\n");
	ck_assert(client_sees_eof(fd));
	close(fd);
}
END_TEST

/* A peer that vanishes with replies owed ends the conn, once. */
START_TEST(test_a_peer_that_closes_ends_the_conn_once)
{
	int	 fd = owner_connect(&owner, OUTPUT_HIGH_TEST);

	owner.reply_size = BIG_REPLY;
	client_send(fd, "a\nb\nc\n");
	close(fd);
	loop_until_gone(&owner);
	loop_passes(3);
	ck_assert_int_eq(owner.ngone, 1);
}
END_TEST

/*
 * Backpressure: while the client reads nothing, the conn stops taking
 * lines once its unread output passes the bound; once the client reads,
 * every line is handled and every reply arrives.
 */
START_TEST(test_unread_output_pauses_reading_until_it_drains)
{
	static char	 buf[1 << 16];
	char		 line[32];
	size_t		 got = 0, n, i;
	int		 fd = owner_connect(&owner, OUTPUT_HIGH_TEST);

	owner.reply_size = BIG_REPLY;
	for (i = 0; i < 100; i++) {
		snprintf(line, sizeof line, "%zu\n", i);
		client_send(fd, line);
	}
	loop_passes(50);
	/* The socket holds some replies, the output at most the bound. */
	ck_assert_uint_gt(owner.nlines, 0);
	ck_assert_uint_lt(owner.nlines, 100);
	n = owner.nlines;
	loop_passes(50);
	ck_assert_uint_eq(owner.nlines, n);
	for (i = 0; i < 100000 && got < 100 * BIG_REPLY; i++) {
		event_base_loop(base, EVLOOP_NONBLOCK);
		got += client_drain(fd, buf, sizeof buf);
	}
	ck_assert_uint_eq(owner.nlines, 100);
	ck_assert_uint_eq(got, 100 * BIG_REPLY);
	for (i = 0; i < 100; i++)
		ck_assert_uint_eq(strtoul(owner.lines[i], NULL, 10), i);
	close(fd);
}
END_TEST

/* One client's long pipeline is handed over a share per loop pass. */
START_TEST(test_a_long_pipeline_is_handed_over_across_passes)
{
	static char	 pipeline[300 * 8];
	size_t		 len = 0, i;
	int		 fd = owner_connect(&owner, 1 << 20);

	for (i = 0; i < 300; i++)
		len += snprintf(pipeline + len, sizeof pipeline - len,
		    "%zu\n", i);
	ck_assert_int_eq(write(fd, pipeline, len), (ssize_t)len);
	event_base_loop(base, EVLOOP_ONCE);
	ck_assert_uint_gt(owner.nlines, 0);
	ck_assert_uint_lt(owner.nlines, 300);
	loop_until_lines(&owner, 300);
	for (i = 0; i < 300; i++)
		ck_assert_uint_eq(strtoul(owner.lines[i], NULL, 10), i);
	close(fd);
}
END_TEST

/*
 * A line written to another conn from inside this conn's callback is
 * queued there and arrives; each conn's own replies keep their order.
 */
START_TEST(test_writes_to_another_conn_from_a_callback_arrive)
{
	static struct owner	 other;
	char			 buf[4096];
	int			 fd = owner_connect(&owner, OUTPUT_HIGH_TEST);
	int			 other_fd = owner_connect(&other,
				    OUTPUT_HIGH_TEST);

	owner.echo = 1;
	owner.forward = &other;
	client_send(fd, "x\ny\n");
	loop_until_lines(&owner, 2);
	loop_passes(3);
	client_drain(fd, buf, sizeof buf);
	ck_assert_str_eq(buf, "x\ny\n");
	client_drain(other_fd, buf, sizeof buf);
	ck_assert_str_eq(buf, "x\ny\n");
	owner_clear(&other);
	ck_assert(client_sees_eof(other_fd));
	close(other_fd);
	close(fd);
}
END_TEST

/* conn_free by the owner: no callback, the socket closes at once. */
START_TEST(test_the_owner_frees_a_conn_without_callbacks)
{
	int	 fd = owner_connect(&owner, OUTPUT_HIGH_TEST);

	owner.reply_size = BIG_REPLY;
	client_send(fd, "a\n");
	loop_until_lines(&owner, 1);
	conn_free(owner.conn);
	owner.conn = NULL;
	ck_assert_int_eq(owner.ncloses, 0);
	ck_assert_int_eq(owner.ngone, 0);
	ck_assert(client_sees_eof(fd));
	close(fd);
}
END_TEST

static Suite *
conn_suite(void)
{
	Suite	*s = suite_create("conn");
	TCase	*tc = tcase_create("transport");

	tcase_add_checked_fixture(tc, setup_transport, teardown_transport);
	tcase_add_test(tc, test_a_line_split_across_reads_is_handed_over_whole);
	tcase_add_test(tc, test_lines_of_one_read_are_handed_over_in_order);
	tcase_add_test(tc, test_a_line_of_the_longest_length_is_handed_over);
	tcase_add_test(tc, test_a_line_past_the_limit_closes_with_too_large);
	tcase_add_test(tc, test_close_with_sends_the_error_and_reads_no_more);
	tcase_add_test(tc, test_replies_flush_after_the_peer_half_closes);
	tcase_add_test(tc, test_a_peer_that_closes_ends_the_conn_once);
	tcase_add_test(tc, test_unread_output_pauses_reading_until_it_drains);
	tcase_add_test(tc, test_a_long_pipeline_is_handed_over_across_passes);
	tcase_add_test(tc, test_writes_to_another_conn_from_a_callback_arrive);
	tcase_add_test(tc, test_the_owner_frees_a_conn_without_callbacks);
	suite_add_tcase(s, tc);

	tc = tcase_create("throttle");

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
