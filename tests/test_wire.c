/*
 * The wire protocol: a real locksd on a temporary socket, driven with raw
 * JSON lines and checked byte by byte where it matters, with flock(1) on
 * its lock files.  Each test proves one rule of protocol/PROTOCOL.md:
 * hello, ping and ids, acquire and release, a lock's life with its
 * connection, list and status, every error code, and lock files.
 *
 * Most TCases share one daemon (h_srv), started in an unchecked fixture
 * (harness.h says why), and each test uses lock names of its own.  A test
 * that needs a daemon to itself (exact status counts) starts one inside
 * the test; the harness makes it die with the test's process.
 *
 * Time bounds are generous on purpose (CI machines are noisy), and
 * stretched further when $LOCKSD_WRAPPER (say, valgrind) slows the daemon.
 */

#include <sys/stat.h>

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <check.h>

#include "harness.h"
#include "protocol.h"

/* Check a holder's fields: the peer's credentials, labels, mode, since. */
static void
check_holder(struct json_object *h, pid_t pid, const char *client,
    const char *owner, const char *mode)
{
	double	 since = h_num(h, "since");

	ck_assert_msg(h_int(h, "pid") == pid, "pid %ld expected: %s",
	    (long)pid, h_json(h));
	ck_assert_msg(h_int(h, "uid") == getuid(), "uid: %s", h_json(h));
	ck_assert_msg(h_int(h, "gid") == getgid(), "gid: %s", h_json(h));
	ck_assert_str_eq(h_str(h, "client"), client);
	ck_assert_str_eq(h_str(h, "owner"), owner);
	ck_assert_str_eq(h_str(h, "mode"), mode);
	ck_assert_msg(since > h_wall_now() - 60 && since <= h_wall_now() + 1,
	    "since is not a recent unix time: %s", h_json(h));
}

/* The failed cases of a table-driven test, reported all together. */
struct misses {
	char	 text[8192];
	int	 n;
};

static void __attribute__((format(printf, 2, 3)))
miss(struct misses *m, const char *fmt, ...)
{
	va_list	 ap;
	size_t	 len = strlen(m->text);

	m->n++;
	if (len + 4 >= sizeof m->text)
		return;
	strcat(m->text, "\n  ");
	va_start(ap, fmt);
	vsnprintf(m->text + len + 3, sizeof m->text - len - 3, fmt, ap);
	va_end(ap);
}

#define EXPECT_NO_MISSES(m)						\
	ck_assert_msg((m)->n == 0, "%d case(s) failed:%s", (m)->n,	\
	    (m)->text)

/* Whether a reply has error code and the id whose JSON text is id. */
static int
error_with_id(struct json_object *r, const char *code, const char *id)
{
	struct json_object	*want, *value;
	int			 same;

	if (h_err(r) == NULL || strcmp(h_err(r), code) != 0 ||
	    h_str(h_get(r, "error"), "message") == NULL)
		return 0;
	/* json-c represents a JSON null as NULL: look for the key itself. */
	if (!json_object_object_get_ex(r, "id", &value))
		return 0;
	want = json_tokener_parse(id);
	same = json_object_equal(value, want);
	json_object_put(want);
	return same;
}

/*
 * Session basics: hello, ping, ids, framing.
 */

START_TEST(test_hello_reports_server_version_protocol_and_pid)
{
	struct h_conn		*c = h_connect();
	struct json_object	*r, *st;
	unsigned		 major, minor, patch;
	int			 end = 0;

	r = h_request(c, "{\"op\":\"hello\",\"client\":\"itest\",\"id\":1}");
	EXPECT_OK(r);
	EXPECT_ID(r, 1);
	ck_assert_str_eq(h_str(r, "server"), "locksd");
	ck_assert_ptr_nonnull(h_str(r, "version"));
	ck_assert_msg(sscanf(h_str(r, "version"), "%u.%u.%u%n", &major,
	    &minor, &patch, &end) == 3 &&
	    (size_t)end == strlen(h_str(r, "version")),
	    "version is not semver: %s", h_json(r));
	ck_assert_int_eq(h_int(r, "protocol"), 1);
	ck_assert_int_eq(h_int(r, "pid"), h_srv.pid);

	st = h_request(c, "{\"op\":\"status\"}");
	EXPECT_OK(st);
	ck_assert_str_eq(h_str(st, "version"), h_str(r, "version"));
	ck_assert_int_eq(h_int(st, "pid"), h_srv.pid);
	h_conn_close(c);
}
END_TEST

START_TEST(test_hello_is_optional_and_sets_the_client_label)
{
	struct h_conn		*anon = h_connect(), *named, *c = h_connect();
	struct json_object	*entry;

	h_take(anon, "hello-anon", "exclusive");
	entry = h_listed(c, "hello-anon");
	ck_assert_ptr_nonnull(entry);
	ck_assert_str_eq(h_str(h_member(entry, "holders", 0), "client"), "");

	named = h_connect_hello("label-one");
	EXPECT_OK(h_request(named,
	    "{\"op\":\"hello\",\"client\":\"label-two\"}"));
	h_take(named, "hello-named", "exclusive");
	entry = h_listed(c, "hello-named");
	ck_assert_ptr_nonnull(entry);
	ck_assert_str_eq(h_str(h_member(entry, "holders", 0), "client"),
	    "label-two");
}
END_TEST

START_TEST(test_ping_replies_ok_and_nothing_else)
{
	struct h_conn		*c = h_connect();
	struct json_object	*r;

	r = h_request(c, "{\"op\":\"ping\",\"id\":3}");
	EXPECT_OK(r);
	EXPECT_ID(r, 3);
	ck_assert_int_eq(json_object_object_length(r), 2);
	EXPECT_QUIET(c, 0.1);
}
END_TEST

/* Ids of 1 to 2000 characters come back whole in ok and grant replies. */
START_TEST(test_long_ids_are_echoed_whole)
{
	/* Up to PROTO_MAX_ID bytes of JSON, its quotes included. */
	static const size_t	 lens[] = { 1, 63, 64, 65, 200, 1022 };
	struct h_conn		*c = h_connect();
	struct json_object	*r;
	char			 id[2001];
	size_t			 i;

	for (i = 0; i < sizeof lens / sizeof lens[0]; i++) {
		memset(id, 'a' + (int)i, lens[i]);
		id[lens[i]] = '\0';
		r = h_request(c, "{\"id\":\"%s\",\"op\":\"ping\"}", id);
		EXPECT_OK(r);
		ck_assert_str_eq(h_str(r, "id"), id);
		r = h_request(c, "{\"id\":\"%s\",\"op\":\"acquire\","
		    "\"name\":\"long-id\"}", id);
		EXPECT_OK(r);
		ck_assert_str_eq(h_str(r, "id"), id);
		ck_assert_str_eq(h_str(r, "name"), "long-id");
		r = h_request(c, "{\"id\":\"%s\",\"op\":\"release\","
		    "\"name\":\"long-id\"}", id);
		EXPECT_OK(r);
		ck_assert_str_eq(h_str(r, "id"), id);
	}
	h_conn_close(c);
}
END_TEST

START_TEST(test_replies_echo_every_kind_of_scalar_id)
{
	static const char *ids[] = { "\"abc\"", "\"\"", "42", "-7", "1.5",
	    "true", "false", "null", "\"caf\\u00e9\"" };
	struct h_conn		*c = h_connect();
	struct json_object	*r, *want;
	size_t			 i;

	for (i = 0; i < sizeof ids / sizeof ids[0]; i++) {
		want = json_tokener_parse(ids[i]);
		r = h_request(c, "{\"id\":%s,\"op\":\"ping\"}", ids[i]);
		EXPECT_OK(r);
		ck_assert_msg(h_get(r, "id") != NULL || want == NULL,
		    "no id in %s", h_json(r));
		ck_assert_msg(json_object_equal(h_get(r, "id"), want),
		    "id %s not echoed: %s", ids[i], h_json(r));
		json_object_put(want);

		/* Failures echo the id too. */
		r = h_request(c, "{\"id\":%s,\"op\":\"no-such-op\"}", ids[i]);
		EXPECT_ERROR(r, "unknown_op");
		want = json_tokener_parse(ids[i]);
		ck_assert_msg(json_object_equal(h_get(r, "id"), want),
		    "id %s not echoed: %s", ids[i], h_json(r));
		json_object_put(want);
	}
	r = h_request(c, "{\"op\":\"ping\"}");
	EXPECT_OK(r);
	EXPECT_NULL_ID(r);
	r = h_request(c, "{\"op\":\"acquire\",\"name\":\"id-absent\"}");
	EXPECT_OK(r);
	EXPECT_NULL_ID(r);
}
END_TEST

START_TEST(test_blank_lines_are_ignored)
{
	struct h_conn		*c = h_connect();
	struct json_object	*r;

	ck_assert_int_eq(h_send_raw(c, "\n   \n\t\n\n", 8), 0);
	EXPECT_QUIET(c, 0.2);
	r = h_request(c, "{\"op\":\"ping\",\"id\":1}");
	EXPECT_OK(r);
	EXPECT_ID(r, 1);
	EXPECT_QUIET(c, 0.1);
}
END_TEST

/* A connection read raw, a line at a time: the test checks its bytes. */
struct raw_conn {
	struct h_conn	*c;
	char		*buf;
	size_t		 len;
	size_t		 cap;
};

/*
 * The next line the daemon sends on rc, without its LF, as a new string;
 * it must be valid UTF-8 and one JSON object to a strict parser.
 */
static char *
raw_line(struct raw_conn *rc)
{
	struct json_tokener	*tok = proto_tokener_new();
	struct json_object	*obj = NULL;
	struct pollfd		 pfd = { rc->c->fd, POLLIN, 0 };
	double			 deadline = h_now() + h_slow(H_REPLY_SECS);
	char			*nl, *line;
	ssize_t			 n;
	size_t			 len;

	for (;;) {
		if (rc->len > 0 &&
		    (nl = memchr(rc->buf, '\n', rc->len)) != NULL)
			break;
		if (rc->cap - rc->len < 65536) {
			rc->cap = rc->cap * 2 + 65536;
			rc->buf = realloc(rc->buf, rc->cap);
			ck_assert_ptr_nonnull(rc->buf);
		}
		ck_assert_msg(h_now() < deadline, "no line from the daemon");
		if (poll(&pfd, 1, 100) <= 0)
			continue;
		n = read(rc->c->fd, rc->buf + rc->len, rc->cap - rc->len);
		ck_assert_msg(n > 0, "the daemon closed the connection");
		rc->len += (size_t)n;
	}
	len = (size_t)(nl - rc->buf);
	line = strndup(rc->buf, len);
	ck_assert_ptr_nonnull(line);
	memmove(rc->buf, nl + 1, rc->len - len - 1);
	rc->len -= len + 1;
	ck_assert_msg(strlen(line) == len, "NUL in a line the daemon sent");
	ck_assert_msg(proto_utf8_valid(line, len), "not UTF-8: %.300s", line);
	ck_assert_msg(proto_parse_line(tok, line, len, &obj) == 0 &&
	    json_object_is_type(obj, json_type_object),
	    "not a JSON object: %.300s", line);
	json_object_put(obj);
	json_tokener_free(tok);
	return line;
}

/* Send a line on rc and return the line that comes back. */
static char *
raw_request(struct raw_conn *rc, const char *line)
{
	ck_assert_int_eq(h_send_raw(rc->c, line, strlen(line)), 0);
	ck_assert_int_eq(h_send_raw(rc->c, "\n", 1), 0);
	return raw_line(rc);
}

/* A line must start {"id":<id>, then say what it is with what. */
static void
expect_line(char *line, const char *id, const char *what)
{
	size_t	 n = strlen(id);

	ck_assert_msg(strncmp(line, "{\"id\":", 6) == 0 &&
	    strncmp(line + 6, id, n) == 0 && line[6 + n] == ',',
	    "id %s does not come back exactly: %.300s", id, line);
	ck_assert_msg(strstr(line + 6 + n, what) != NULL,
	    "no %s in %.300s", what, line);
	free(line);
}

/*
 * Every kind of id the daemon takes comes back byte for byte: in a plain
 * reply, an error, a blocking event and a later grant, on the fast path
 * and on the json-c path (which an unknown array field forces).
 */
START_TEST(test_every_taken_id_comes_back_byte_for_byte)
{
	static const char *const ids[] = { "\"abc\"", "\"\"",
	    "\"caf\xc3\xa9 \xe2\x98\x83\"", "\"a/b\"", "42", "-7", "0",
	    "123456789012345678", "9223372036854775807",
	    "-9223372036854775807", "1.5", "1.50", "1e38", "-2.5E-3", "true",
	    "false", "null" };
	static const char *const paths[] = { "", ",\"x\":[1]" };
	struct raw_conn		 a = { h_connect(), NULL, 0, 0 };
	struct raw_conn		 b = { h_connect(), NULL, 0, 0 };
	char			 line[512];
	size_t			 i, j;

	for (i = 0; i < sizeof ids / sizeof ids[0]; i++) {
		for (j = 0; j < 2; j++) {
			snprintf(line, sizeof line, "{\"id\":%s,\"op\":\"ping\""
			    "%s}", ids[i], paths[j]);
			expect_line(raw_request(&b, line), ids[i],
			    "\"ok\":true");
			snprintf(line, sizeof line, "{\"id\":%s,\"op\":\"fly\""
			    "%s}", ids[i], paths[j]);
			expect_line(raw_request(&b, line), ids[i],
			    "\"unknown_op\"");
			expect_line(raw_request(&a, "{\"id\":1,\"op\":"
			    "\"acquire\",\"name\":\"idx\"}"), "1", "\"token\"");
			snprintf(line, sizeof line, "{\"id\":%s,\"op\":"
			    "\"acquire\",\"name\":\"idx\",\"timeout\":0%s}",
			    ids[i], paths[j]);
			expect_line(raw_request(&b, line), ids[i],
			    "\"timeout\"");
			snprintf(line, sizeof line, "{\"id\":%s,\"op\":"
			    "\"acquire\",\"name\":\"idx\","
			    "\"notify_after\":0%s}", ids[i], paths[j]);
			expect_line(raw_request(&b, line), ids[i],
			    "\"event\":\"blocking\"");
			expect_line(raw_request(&a, "{\"id\":2,\"op\":"
			    "\"release\",\"name\":\"idx\"}"), "2",
			    "\"ok\":true");
			expect_line(raw_line(&b), ids[i], "\"token\"");
			snprintf(line, sizeof line, "{\"id\":%s,\"op\":"
			    "\"acquire\",\"name\":\"idx\"%s}", ids[i],
			    paths[j]);
			expect_line(raw_request(&b, line), ids[i],
			    "\"already_held\"");
			snprintf(line, sizeof line, "{\"id\":%s,\"op\":"
			    "\"release\",\"name\":\"idx\"%s}", ids[i],
			    paths[j]);
			expect_line(raw_request(&b, line), ids[i],
			    "\"ok\":true");
		}
	}
	free(a.buf);
	free(b.buf);
}
END_TEST

/* Integers json-c would change (past +-(2^63 - 1)) are bad_request. */
START_TEST(test_ids_that_cannot_come_back_are_bad_request)
{
	static const char *const ids[] = {
	    "100000000000000000000000000000000000000",
	    "-100000000000000000000000000000000000000",
	    "18446744073709551615", "18446744073709551616",
	    "9223372036854775808", "-9223372036854775809",
	    "-9223372036854775808" };
	struct raw_conn		 b = { h_connect(), NULL, 0, 0 };
	struct h_conn		*c = h_connect();
	struct json_object	*r;
	char			 line[512];
	size_t			 i;

	for (i = 0; i < sizeof ids / sizeof ids[0]; i++) {
		snprintf(line, sizeof line, "{\"id\":%s,\"op\":\"ping\"}",
		    ids[i]);
		expect_line(raw_request(&b, line), "null", "\"bad_request\"");
		snprintf(line, sizeof line, "{\"id\":%s,\"op\":\"acquire\","
		    "\"name\":\"id-range\"}", ids[i]);
		expect_line(raw_request(&b, line), "null",
		    "integer id out of range");
	}
	/* None of those acquires took the lock. */
	r = h_take(c, "id-range", "exclusive");
	EXPECT_OK(r);
	free(b.buf);
}
END_TEST

/* An id is at most 1024 bytes of JSON: a longer one is bad_request. */
START_TEST(test_ids_longer_than_1024_bytes_are_bad_request)
{
	struct h_conn		*c = h_connect(), *d = h_connect();
	struct json_object	*r;
	char			 id[PROTO_MAX_ID + 2];

	/* 1022 bytes and its quotes: the longest id. */
	memset(id, 'i', PROTO_MAX_ID - 2);
	id[PROTO_MAX_ID - 2] = '\0';
	r = h_request(c, "{\"id\":\"%s\",\"op\":\"acquire\",\"name\":"
	    "\"id-cap\"}", id);
	EXPECT_OK(r);
	ck_assert_str_eq(h_str(r, "id"), id);
	r = h_request(c, "{\"id\":\"%s\",\"op\":\"release\",\"name\":"
	    "\"id-cap\"}", id);
	EXPECT_OK(r);
	ck_assert_str_eq(h_str(r, "id"), id);

	strcat(id, "i");
	r = h_request(c, "{\"id\":\"%s\",\"op\":\"acquire\",\"name\":"
	    "\"id-cap\"}", id);
	EXPECT_ERROR(r, "bad_request");
	EXPECT_NULL_ID(r);
	ck_assert_msg(strstr(h_str(h_get(r, "error"), "message"),
	    "id longer than 1024 bytes") != NULL, "%s", h_json(r));
	/* On the json-c path too, and nothing was taken. */
	r = h_request(c, "{\"id\":\"%s\",\t\"op\":\"acquire\",\"name\":"
	    "\"id-cap\",\"x\":[1]}", id);
	EXPECT_ERROR(r, "bad_request");
	EXPECT_NULL_ID(r);
	r = h_take(d, "id-cap", "exclusive");
	EXPECT_OK(r);
	r = h_request(c, "{\"id\":1%01024d,\"op\":\"ping\"}", 0);
	EXPECT_ERROR(r, "bad_request");
}
END_TEST

/*
 * Labels that are not UTF-8 (raw, or a lone surrogate escape) are
 * bad_json, so every line a list or blocking event carries stays UTF-8.
 */
START_TEST(test_labels_that_are_not_utf8_are_refused)
{
	static const char *const bad[] = { "\xc0\xaf", "\xff\xfe",
	    "\xed\xa0\x80", "\xe0\x80\xaf", "\xf4\x90\x80\x80", "x\xc3",
	    "\\ud800", "\\udc00x" };
	struct raw_conn		 w = { h_connect(), NULL, 0, 0 };
	struct h_conn		*c = h_connect();
	struct json_object	*r;
	char			*line;
	size_t			 i;

	for (i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		r = h_request(c, "{\"id\":1,\"op\":\"acquire\",\"name\":"
		    "\"utf8-%zu\",\"owner\":\"%s\"}", i, bad[i]);
		EXPECT_ERROR(r, "bad_json");
		r = h_request(c, "{\"id\":2,\"op\":\"hello\",\"client\":"
		    "\"%s\"}", bad[i]);
		EXPECT_ERROR(r, "bad_json");
	}
	/* Valid UTF-8 labels, raw and escaped, are shown as they are. */
	r = h_request(c, "{\"op\":\"hello\",\"client\":\"caf\xc3\xa9\"}");
	EXPECT_OK(r);
	r = h_request(c, "{\"op\":\"acquire\",\"name\":\"utf8-held\","
	    "\"owner\":\"\\ud83d\\ude00 \xe2\x98\x83\"}");
	EXPECT_OK(r);
	expect_line(raw_request(&w, "{\"id\":3,\"op\":\"acquire\",\"name\":"
	    "\"utf8-held\",\"notify_after\":0,\"owner\":\"\xf0\x9f\x98\x80\"}"),
	    "3", "\"owner\":\"\xf0\x9f\x98\x80 \xe2\x98\x83\"");
	line = raw_request(&w, "{\"id\":4,\"op\":\"list\"}");
	ck_assert_msg(strstr(line, "\"client\":\"caf\xc3\xa9\"") != NULL,
	    "%s", line);
	ck_assert_msg(strstr(line, "utf8-0") == NULL, "%s", line);
	expect_line(line, "4", "\"name\":\"utf8-held\"");
	free(w.buf);
}
END_TEST

START_TEST(test_unknown_request_fields_are_ignored)
{
	struct h_conn		*c = h_connect();
	struct json_object	*r;

	r = h_request(c, "{\"op\":\"ping\",\"id\":1,\"extra\":{\"a\":[1,2]},"
	    "\"zz\":null}");
	EXPECT_OK(r);
	r = h_request(c, "{\"op\":\"acquire\",\"id\":2,\"name\":\"unk-x\","
	    "\"colour\":\"blue\",\"priority\":99}");
	EXPECT_OK(r);
	ck_assert_str_eq(h_str(r, "name"), "unk-x");
}
END_TEST

/*
 * Depth as PROTOCOL.md counts it: a top-level value is at depth 1 and each
 * value inside a container one deeper, so the 1 in {"x":[[[[[[1]]]]]]}
 * (an object and 6 arrays) is at depth 8.
 */
START_TEST(test_nesting_depth_of_eight_is_accepted_and_nine_is_not)
{
	struct h_conn		*c = h_connect();
	struct json_object	*r;

	r = h_request(c, "{\"op\":\"ping\",\"id\":1,"
	    "\"x\":[[[[[[1]]]]]]}");
	EXPECT_OK(r);
	EXPECT_ID(r, 1);
	r = h_request(c, "{\"op\":\"ping\",\"id\":2,"
	    "\"x\":{\"a\":{\"b\":{\"c\":{\"d\":{\"e\":{\"f\":1}}}}}}}");
	EXPECT_OK(r);
	EXPECT_ID(r, 2);
	/* One level more puts the 1 at depth 9. */
	r = h_request(c, "{\"op\":\"ping\",\"id\":3,"
	    "\"x\":[[[[[[[1]]]]]]]}");
	EXPECT_ERROR(r, "bad_json");
	EXPECT_NULL_ID(r);
	r = h_request(c, "{\"op\":\"ping\",\"id\":4,"
	    "\"x\":{\"a\":{\"b\":{\"c\":{\"d\":{\"e\":{\"f\":"
	    "{\"g\":1}}}}}}}}");
	EXPECT_ERROR(r, "bad_json");
	EXPECT_NULL_ID(r);
	r = h_request(c, "{\"op\":\"ping\",\"id\":5}");
	EXPECT_OK(r);
	EXPECT_ID(r, 5);
}
END_TEST

/*
 * acquire and release.
 */

START_TEST(test_acquire_grant_reports_name_mode_token_and_waited)
{
	struct h_conn		*c = h_connect();
	struct json_object	*r;
	int64_t			 token;

	r = h_request(c, "{\"op\":\"acquire\",\"id\":\"g1\","
	    "\"name\":\"grant-x\"}");
	EXPECT_OK(r);
	ck_assert_str_eq(h_str(r, "id"), "g1");
	ck_assert_str_eq(h_str(r, "name"), "grant-x");
	ck_assert_str_eq(h_str(r, "mode"), "exclusive");
	token = h_int(r, "token");
	ck_assert_msg(token > 0 && token < H_MAX_SAFE_INTEGER,
	    "token is not an integer in (0, 2^53): %s", h_json(r));
	ck_assert_msg(h_num(r, "waited") >= 0 && h_num(r, "waited") < 1,
	    "waited is not a small number of seconds: %s", h_json(r));

	r = h_request(c, "{\"op\":\"acquire\",\"id\":\"g2\","
	    "\"name\":\"grant-s\",\"mode\":\"shared\",\"timeout\":null,"
	    "\"owner\":\"me\"}");
	EXPECT_OK(r);
	ck_assert_str_eq(h_str(r, "name"), "grant-s");
	ck_assert_str_eq(h_str(r, "mode"), "shared");
	ck_assert_int_gt(h_int(r, "token"), token);
}
END_TEST

START_TEST(test_tokens_strictly_increase_across_grants)
{
	struct h_conn		*a = h_connect(), *b = h_connect();
	struct h_conn		*s = h_connect();
	struct json_object	*r;
	int64_t			 last = 0, t;
	char			 name[32];
	int			 i;

	for (i = 0; i < 10; i++) {
		snprintf(name, sizeof name, "tok-%d", i % 3);
		t = h_int(h_take(a, name, "exclusive"), "token");
		ck_assert_int_gt(t, last);
		last = t;
		/* b queues, then gets the lock by handoff. */
		ck_assert_int_eq(h_send(b, "{\"op\":\"acquire\",\"id\":%d,"
		    "\"name\":\"%s\",\"notify_after\":60}", i, name), 0);
		EXPECT_OK(h_request(b, "{\"op\":\"ping\"}"));
		h_drop(a, name);
		t = h_int(h_granted(b, i, 2), "token");
		ck_assert_int_gt(t, last);
		last = t;
		h_drop(b, name);
		/* Shared holders each get a token of their own. */
		t = h_int(h_take(a, "tok-shared", "shared"), "token");
		ck_assert_int_gt(t, last);
		last = t;
		t = h_int(h_take(s, "tok-shared", "shared"), "token");
		ck_assert_int_gt(t, last);
		last = t;
		h_drop(a, "tok-shared");
		h_drop(s, "tok-shared");
	}
	r = h_request(a, "{\"op\":\"acquire\",\"name\":\"tok-last\"}");
	ck_assert_int_gt(h_int(r, "token"), last);
}
END_TEST

START_TEST(test_exclusive_holder_blocks_second_with_blocking_event)
{
	struct h_holder		 holder;
	struct h_conn		*c = h_connect();
	struct json_object	*r, *h;
	double			 t0;

	ck_assert_msg(h_holder_spawn(&holder, h_srv.socket_path, "blk-x",
	    LOCKS_EXCLUSIVE, "holder-client", "holder-owner") == 0, "%s",
	    h_error());
	t0 = h_now();
	r = h_request(c, "{\"op\":\"acquire\",\"id\":\"w1\","
	    "\"name\":\"blk-x\"}");
	EXPECT_BLOCKING(r);
	ck_assert_str_eq(h_str(r, "id"), "w1");
	ck_assert_str_eq(h_str(r, "name"), "blk-x");
	ck_assert_int_eq(h_int(r, "position"), 1);
	ck_assert_int_eq(h_len(r, "holders"), 1);
	h = h_member(r, "holders", 0);
	check_holder(h, holder.pid, "holder-client", "holder-owner",
	    "exclusive");
	ck_assert_int_eq(h_int(h, "token"), holder.token);

	EXPECT_QUIET(c, 0.2);
	ck_assert_msg(h_holder_release(&holder) == 0, "%s", h_error());
	r = h_recv(c, h_slow(2));
	EXPECT_OK(r);
	ck_assert_str_eq(h_str(r, "id"), "w1");
	ck_assert_int_gt(h_int(r, "token"), holder.token);
	ck_assert_msg(h_num(r, "waited") >= 0.15 &&
	    h_num(r, "waited") <= h_now() - t0 + 0.05,
	    "waited does not match the wait: %s", h_json(r));
}
END_TEST

START_TEST(test_blocking_event_reports_queue_position)
{
	struct h_conn	*h = h_connect(), *w1 = h_connect(), *w2 = h_connect();
	struct h_conn	*w3 = h_connect();

	h_take(h, "pos-x", "exclusive");
	ck_assert_int_eq(h_int(h_queue(w1, "pos-x", "exclusive", 1, "w1"),
	    "position"), 1);
	ck_assert_int_eq(h_int(h_queue(w2, "pos-x", "shared", 2, "w2"),
	    "position"), 2);
	ck_assert_int_eq(h_int(h_queue(w3, "pos-x", "exclusive", 3, "w3"),
	    "position"), 3);
	/* Leaving the queue moves those behind up. */
	h_conn_close(w1);
	h_conn_close(w2);
	EXPECT_OK(h_request(h, "{\"op\":\"ping\"}"));
	h_conn_close(h);
	h_granted(w3, 3, 2);
}
END_TEST

START_TEST(test_notify_after_delays_the_single_blocking_event)
{
	struct h_conn		*h = h_connect(), *w = h_connect();
	struct h_conn		*late = h_connect();
	struct json_object	*r;
	double			 t0, waited;

	h_take(h, "notify-x", "exclusive");
	t0 = h_now();
	ck_assert_int_eq(h_send(w, "{\"op\":\"acquire\",\"id\":1,"
	    "\"name\":\"notify-x\",\"notify_after\":0.5}"), 0);
	EXPECT_QUIET(w, 0.3);
	r = h_recv(w, h_slow(3));
	waited = h_now() - t0;
	EXPECT_BLOCKING(r);
	EXPECT_ID(r, 1);
	ck_assert_msg(waited >= 0.45, "event after %.3f s, not 0.5", waited);
	ck_assert_int_eq(h_int(r, "position"), 1);
	/* One event only, however long the wait. */
	EXPECT_QUIET(w, 0.8);

	/* A wait shorter than notify_after sends no event at all. */
	ck_assert_int_eq(h_send(late, "{\"op\":\"acquire\",\"id\":2,"
	    "\"name\":\"notify-x\",\"notify_after\":30}"), 0);
	EXPECT_OK(h_request(late, "{\"op\":\"ping\",\"id\":3}"));
	h_drop(h, "notify-x");
	h_granted(w, 1, 2);
	h_drop(w, "notify-x");
	r = h_recv(late, h_slow(2));
	EXPECT_OK(r);
	EXPECT_ID(r, 2);
}
END_TEST

START_TEST(test_timeout_fails_the_acquire_and_leaves_nothing_queued)
{
	struct h_conn		*h = h_connect(), *w = h_connect();
	struct json_object	*r, *entry;
	double			 t0, took;

	h_take(h, "to-x", "exclusive");
	t0 = h_now();
	/* The timeout passes before notify_after: no event. */
	ck_assert_int_eq(h_send(w, "{\"op\":\"acquire\",\"id\":5,"
	    "\"name\":\"to-x\",\"timeout\":0.3,\"notify_after\":1}"), 0);
	r = h_recv(w, h_slow(3));
	took = h_now() - t0;
	EXPECT_ERROR(r, "timeout");
	EXPECT_ID(r, 5);
	ck_assert_msg(took >= 0.25 && took < h_slow(3),
	    "timeout after %.3f s, not 0.3", took);
	EXPECT_QUIET(w, 1.0);

	entry = h_listed(w, "to-x");
	ck_assert_ptr_nonnull(entry);
	ck_assert_int_eq(h_len(entry, "holders"), 1);
	ck_assert_int_eq(h_len(entry, "waiters"), 0);
	h_drop(h, "to-x");
	ck_assert_ptr_null(h_listed(w, "to-x"));
	EXPECT_QUIET(w, 0.2);
	/* Nothing of the failed acquire is left: the name is free to take. */
	h_take(w, "to-x", "exclusive");
}
END_TEST

START_TEST(test_timeout_after_the_event_still_fails)
{
	struct h_conn		*h = h_connect(), *w = h_connect();
	struct json_object	*r;

	h_take(h, "to-late", "exclusive");
	ck_assert_int_eq(h_send(w, "{\"op\":\"acquire\",\"id\":1,"
	    "\"name\":\"to-late\",\"timeout\":0.4,\"notify_after\":0.1}"), 0);
	r = h_recv(w, h_slow(3));
	EXPECT_BLOCKING(r);
	r = h_recv(w, h_slow(3));
	EXPECT_ERROR(r, "timeout");
	EXPECT_ID(r, 1);
	ck_assert_int_eq(h_len(h_listed(w, "to-late"), "waiters"), 0);
}
END_TEST

START_TEST(test_timeout_zero_fails_at_once_without_event)
{
	struct h_conn		*h = h_connect(), *w = h_connect();
	struct json_object	*r;
	double			 t0;

	h_take(h, "tz-x", "exclusive");
	t0 = h_now();
	ck_assert_int_eq(h_send(w, "{\"op\":\"acquire\",\"id\":1,"
	    "\"name\":\"tz-x\",\"timeout\":0}\n{\"op\":\"ping\",\"id\":2}"),
	    0);
	r = h_recv(w, h_slow(2));
	EXPECT_ERROR(r, "timeout");
	EXPECT_ID(r, 1);
	ck_assert_msg(h_now() - t0 < h_slow(1), "timeout 0 waited");
	r = h_recv(w, h_slow(2));
	EXPECT_OK(r);
	EXPECT_ID(r, 2);
	ck_assert_int_eq(h_len(h_listed(w, "tz-x"), "waiters"), 0);

	/* On a free name, timeout 0 is granted. */
	r = h_request(w, "{\"op\":\"acquire\",\"id\":3,\"name\":\"tz-free\","
	    "\"timeout\":0}");
	EXPECT_OK(r);
	EXPECT_QUIET(w, 0.1);
}
END_TEST

START_TEST(test_release_hands_off_to_next_waiter_at_once)
{
	struct h_conn		*h = h_connect(), *w = h_connect();
	struct json_object	*r;
	double			 t0;

	h_take(h, "handoff-x", "exclusive");
	h_queue(w, "handoff-x", "exclusive", 7, "next");
	h_sleep(0.2);
	t0 = h_now();
	h_drop(h, "handoff-x");
	r = h_granted(w, 7, 2);
	ck_assert_msg(h_now() - t0 < h_slow(2), "handoff took %.3f s",
	    h_now() - t0);
	ck_assert_msg(h_num(r, "waited") >= 0.15, "waited: %s", h_json(r));
	ck_assert_str_eq(h_str(h_member(h_listed(h, "handoff-x"), "holders", 0),
	    "owner"), "next");
}
END_TEST

START_TEST(test_release_of_waiting_name_cancels_the_wait_first)
{
	struct h_conn		*h = h_connect(), *w = h_connect();
	struct json_object	*r;

	h_take(h, "cancel-x", "exclusive");
	ck_assert_int_eq(h_send(w, "{\"op\":\"acquire\",\"id\":\"a\","
	    "\"name\":\"cancel-x\",\"notify_after\":60}"), 0);
	EXPECT_OK(h_request(w, "{\"op\":\"ping\"}"));
	ck_assert_int_eq(h_send(w, "{\"op\":\"release\",\"id\":\"r\","
	    "\"name\":\"cancel-x\"}"), 0);
	r = h_recv(w, h_slow(2));
	EXPECT_ERROR(r, "cancelled");
	ck_assert_str_eq(h_str(r, "id"), "a");
	r = h_recv(w, h_slow(2));
	EXPECT_OK(r);
	ck_assert_str_eq(h_str(r, "id"), "r");

	ck_assert_int_eq(h_len(h_listed(w, "cancel-x"), "waiters"), 0);
	h_drop(h, "cancel-x");
	EXPECT_QUIET(w, 0.3);
	ck_assert_ptr_null(h_listed(w, "cancel-x"));
}
END_TEST

START_TEST(test_release_of_name_not_held_is_not_held)
{
	struct h_conn		*h = h_connect(), *other = h_connect();
	struct json_object	*r;

	r = h_request(other, "{\"op\":\"release\",\"id\":4,"
	    "\"name\":\"nh-never\"}");
	EXPECT_ERROR(r, "not_held");
	EXPECT_ID(r, 4);
	ck_assert_ptr_nonnull(h_str(h_get(r, "error"), "message"));

	/* Another connection's lock is not ours to release. */
	h_take(h, "nh-x", "exclusive");
	EXPECT_ERROR(h_request(other, "{\"op\":\"release\","
	    "\"name\":\"nh-x\"}"), "not_held");
	ck_assert_int_eq(h_len(h_listed(other, "nh-x"), "holders"), 1);

	h_drop(h, "nh-x");
	EXPECT_ERROR(h_request(h, "{\"op\":\"release\",\"name\":\"nh-x\"}"),
	    "not_held");
}
END_TEST

START_TEST(test_already_held_for_held_and_waiting_names)
{
	struct h_conn		*h = h_connect(), *w = h_connect();
	struct json_object	*r, *entry;
	int64_t			 token;

	token = h_int(h_take(h, "ah-x", "exclusive"), "token");
	r = h_request(h, "{\"op\":\"acquire\",\"id\":2,\"name\":\"ah-x\"}");
	EXPECT_ERROR(r, "already_held");
	EXPECT_ID(r, 2);
	r = h_request(h, "{\"op\":\"acquire\",\"id\":3,\"name\":\"ah-x\","
	    "\"mode\":\"shared\",\"timeout\":0}");
	EXPECT_ERROR(r, "already_held");
	entry = h_listed(h, "ah-x");
	ck_assert_int_eq(h_len(entry, "holders"), 1);
	ck_assert_int_eq(h_int(h_member(entry, "holders", 0), "token"), token);

	h_queue(w, "ah-x", "exclusive", 10, "");
	r = h_request(w, "{\"op\":\"acquire\",\"id\":11,\"name\":\"ah-x\"}");
	EXPECT_ERROR(r, "already_held");
	EXPECT_ID(r, 11);
	ck_assert_int_eq(h_len(h_listed(w, "ah-x"), "waiters"), 1);
	/* The first wait goes on and is granted. */
	h_drop(h, "ah-x");
	h_granted(w, 10, 2);
}
END_TEST

START_TEST(test_waiting_acquire_does_not_hold_up_pipelined_requests)
{
	struct h_conn		*h = h_connect(), *w = h_connect();
	struct json_object	*r, *entry;
	int			 i;

	h_take(h, "pipe-x", "exclusive");
	ck_assert_int_eq(h_send(w,
	    "{\"op\":\"acquire\",\"id\":1,\"name\":\"pipe-x\","
	    "\"notify_after\":60}\n"
	    "{\"op\":\"ping\",\"id\":2}\n"
	    "{\"op\":\"list\",\"id\":3,\"name\":\"pipe-x\"}\n"
	    "{\"op\":\"acquire\",\"id\":4,\"name\":\"pipe-y\"}\n"
	    "{\"op\":\"status\",\"id\":5}\n"
	    "{\"op\":\"release\",\"id\":6,\"name\":\"pipe-y\"}"), 0);
	for (i = 2; i <= 6; i++) {
		r = h_recv(w, h_slow(2));
		EXPECT_OK(r);
		EXPECT_ID(r, i);
		if (i == 3) {
			entry = h_member(r, "locks", 0);
			ck_assert_int_eq(h_len(entry, "waiters"), 1);
		}
	}
	h_drop(h, "pipe-x");
	h_granted(w, 1, 2);
}
END_TEST

START_TEST(test_waiters_are_granted_in_fifo_order)
{
	enum { N = 20 };
	struct h_conn		*h = h_connect(), *w[N];
	struct json_object	*entry, *r;
	char			 owner[16];
	int64_t			 last;
	int			 i, j;

	last = h_int(h_take(h, "fifo-x", "exclusive"), "token");
	for (i = 0; i < N; i++) {
		w[i] = h_connect();
		snprintf(owner, sizeof owner, "w%02d", i);
		r = h_queue(w[i], "fifo-x", i % 2 ? "shared" : "exclusive", i,
		    owner);
		ck_assert_int_eq(h_int(r, "position"), i + 1);
	}
	entry = h_listed(h, "fifo-x");
	for (i = 0; i < N; i++) {
		snprintf(owner, sizeof owner, "w%02d", i);
		ck_assert_str_eq(h_str(h_member(entry, "waiters", (size_t)i),
		    "owner"), owner);
	}
	h_drop(h, "fifo-x");
	for (i = 0; i < N; i++) {
		r = h_granted(w[i], i, 2);
		ck_assert_int_gt(h_int(r, "token"), last);
		last = h_int(r, "token");
		entry = h_listed(h, "fifo-x");
		snprintf(owner, sizeof owner, "w%02d", i);
		ck_assert_int_eq(h_len(entry, "holders"), 1);
		ck_assert_str_eq(h_str(h_member(entry, "holders", 0), "owner"),
		    owner);
		ck_assert_int_eq(h_len(entry, "waiters"), N - 1 - i);
		for (j = i + 1; j < N && j < i + 3; j++)
			EXPECT_QUIET(w[j], 0);
		h_drop(w[i], "fifo-x");
	}
}
END_TEST

START_TEST(test_shared_run_at_queue_head_is_granted_together)
{
	struct h_conn		*h = h_connect(), *x = h_connect();
	struct h_conn		*s4 = h_connect();
	struct h_conn		*s[3];
	struct json_object	*entry;
	int64_t			 last, t;
	char			 owner[8];
	int			 i;

	last = h_int(h_take(h, "run-x", "exclusive"), "token");
	for (i = 0; i < 3; i++) {
		s[i] = h_connect();
		snprintf(owner, sizeof owner, "s%d", i);
		h_queue(s[i], "run-x", "shared", i, owner);
	}
	h_queue(x, "run-x", "exclusive", 10, "x");
	h_queue(s4, "run-x", "shared", 11, "s4");

	h_drop(h, "run-x");
	for (i = 0; i < 3; i++) {
		t = h_int(h_granted(s[i], i, 2), "token");
		ck_assert_int_gt(t, last);
		last = t;
	}
	entry = h_listed(h, "run-x");
	ck_assert_int_eq(h_len(entry, "holders"), 3);
	for (i = 0; i < 3; i++) {
		snprintf(owner, sizeof owner, "s%d", i);
		ck_assert_str_eq(h_str(h_member(entry, "holders", (size_t)i),
		    "owner"), owner);
		ck_assert_str_eq(h_str(h_member(entry, "holders", (size_t)i),
		    "mode"), "shared");
	}
	ck_assert_int_eq(h_len(entry, "waiters"), 2);
	ck_assert_str_eq(h_str(h_member(entry, "waiters", 0), "owner"), "x");
	ck_assert_str_eq(h_str(h_member(entry, "waiters", 1), "owner"), "s4");
	EXPECT_QUIET(x, 0.2);
	EXPECT_QUIET(s4, 0);

	h_drop(s[0], "run-x");
	h_drop(s[1], "run-x");
	EXPECT_QUIET(x, 0.2);
	h_drop(s[2], "run-x");
	h_granted(x, 10, 2);
	EXPECT_QUIET(s4, 0.2);
	h_drop(x, "run-x");
	h_granted(s4, 11, 2);
}
END_TEST

START_TEST(test_shared_waits_behind_queued_exclusive)
{
	struct h_conn		*s1 = h_connect(), *x = h_connect();
	struct h_conn		*s2 = h_connect();
	struct json_object	*entry;

	h_take(s1, "wq-x", "shared");
	ck_assert_int_eq(h_int(h_queue(x, "wq-x", "exclusive", 1, "x"),
	    "position"), 1);
	/* Compatible with the holder, but a writer is queued first. */
	ck_assert_int_eq(h_int(h_queue(s2, "wq-x", "shared", 2, "s2"),
	    "position"), 2);
	entry = h_listed(s1, "wq-x");
	ck_assert_int_eq(h_len(entry, "holders"), 1);
	ck_assert_int_eq(h_len(entry, "waiters"), 2);

	h_drop(s1, "wq-x");
	h_granted(x, 1, 2);
	EXPECT_QUIET(s2, 0.2);
	h_drop(x, "wq-x");
	h_granted(s2, 2, 2);
}
END_TEST

START_TEST(test_shared_joins_shared_holders_when_nobody_waits)
{
	struct h_conn		*s1 = h_connect(), *s2 = h_connect();
	struct h_conn		*x = h_connect();
	struct json_object	*entry;

	h_take(s1, "sj-x", "shared");
	h_take(s2, "sj-x", "shared");
	EXPECT_ERROR(h_request(x, "{\"op\":\"acquire\",\"name\":\"sj-x\","
	    "\"timeout\":0}"), "timeout");
	entry = h_listed(x, "sj-x");
	ck_assert_int_eq(h_len(entry, "holders"), 2);
	ck_assert_int_lt(h_int(h_member(entry, "holders", 0), "token"),
	    h_int(h_member(entry, "holders", 1), "token"));
}
END_TEST

/*
 * A lock lives as long as its connection.
 */

START_TEST(test_closing_connection_releases_locks_and_cancels_waits)
{
	struct h_conn		*a = h_connect(), *other = h_connect();
	struct h_conn		*w = h_connect();
	struct json_object	*entry;

	h_take(a, "close-x", "exclusive");
	h_take(other, "close-y", "exclusive");
	h_queue(a, "close-y", "exclusive", 1, "a");
	h_queue(w, "close-x", "exclusive", 2, "w");
	h_conn_close(a);
	h_granted(w, 2, 2);
	entry = h_listed(w, "close-y");
	ck_assert_int_eq(h_len(entry, "holders"), 1);
	ck_assert_int_eq(h_len(entry, "waiters"), 0);
}
END_TEST

START_TEST(test_kill_9_of_holder_process_releases_its_lock)
{
	struct h_holder		 holder;
	struct h_conn		*w = h_connect();
	double			 t0;

	ck_assert_msg(h_holder_spawn(&holder, h_srv.socket_path, "k9-x",
	    LOCKS_EXCLUSIVE, "victim", "") == 0, "%s", h_error());
	h_queue(w, "k9-x", "exclusive", 1, "");
	t0 = h_now();
	h_holder_kill(&holder);
	h_granted(w, 1, 2);
	ck_assert_msg(h_now() - t0 < h_slow(2), "release took %.3f s",
	    h_now() - t0);
	ck_assert_int_eq(h_len(h_listed(w, "k9-x"), "holders"), 1);
}
END_TEST

START_TEST(test_half_written_request_then_disconnect_releases_everything)
{
	static const char	 half[] = "{\"op\":\"acquire\",\"na";
	struct h_conn		*a = h_connect(), *w = h_connect();
	struct h_conn		*w2 = h_connect();

	h_take(a, "half-x", "exclusive");
	h_take(w2, "half-z", "exclusive");
	h_queue(a, "half-z", "exclusive", 1, "");
	ck_assert_int_eq(h_send_raw(a, half, sizeof half - 1), 0);
	h_queue(w, "half-x", "exclusive", 2, "");
	/* A partial line alone releases nothing. */
	EXPECT_QUIET(w, 0.3);
	ck_assert_int_eq(h_len(h_listed(w, "half-x"), "holders"), 1);
	h_conn_close(a);
	h_granted(w, 2, 2);
	ck_assert_int_eq(h_len(h_listed(w, "half-z"), "waiters"), 0);
}
END_TEST

/*
 * list and status.
 */

START_TEST(test_list_shows_only_locks_with_holders_or_waiters_sorted)
{
	struct h_conn		*c = h_connect(), *w = h_connect();
	struct json_object	*r, *locks, *entry;
	const char		*prev = "", *name;
	static const char	*want[] = { "ls-a", "ls-b", "ls-c" };
	size_t			 i, n, k = 0;

	h_take(c, "ls-c", "exclusive");
	h_take(c, "ls-a", "shared");
	h_take(c, "ls-b", "exclusive");
	h_take(c, "ls-d", "exclusive");
	h_drop(c, "ls-d");
	h_queue(w, "ls-b", "exclusive", 1, "");

	r = h_request(c, "{\"op\":\"list\",\"id\":9}");
	EXPECT_OK(r);
	EXPECT_ID(r, 9);
	locks = h_get(r, "locks");
	n = json_object_array_length(locks);
	for (i = 0; i < n; i++) {
		entry = h_idx(locks, i);
		name = h_str(entry, "name");
		ck_assert_ptr_nonnull(name);
		ck_assert_msg(strcmp(prev, name) < 0, "not sorted: %s",
		    h_json(r));
		ck_assert_msg(h_len(entry, "holders") +
		    h_len(entry, "waiters") > 0, "empty lock listed: %s",
		    h_json(entry));
		if (strncmp(name, "ls-", 3) == 0) {
			ck_assert_msg(k < 3, "extra lock %s listed", name);
			ck_assert_str_eq(name, want[k]);
			k++;
		}
		prev = name;
	}
	ck_assert_int_eq(k, 3);

	entry = h_listed(c, "ls-b");
	ck_assert_int_eq(h_len(entry, "holders"), 1);
	ck_assert_int_eq(h_len(entry, "waiters"), 1);
	ck_assert_ptr_null(h_listed(c, "ls-d"));
	ck_assert_ptr_null(h_listed(c, "ls-never-used"));
	/* A path is listed by its descriptor, which this request lacks. */
	EXPECT_ERROR(h_request(c, "{\"op\":\"list\",\"name\":\"a/b\"}"),
	    "bad_request");
}
END_TEST

START_TEST(test_list_reports_holder_and_waiter_fields)
{
	struct h_holder		 holder;
	struct h_conn		*w1 = h_connect_hello("lf-waiter");
	struct h_conn		*w2 = h_connect();
	struct json_object	*entry, *h, *wt;
	double			 before = h_wall_now();

	ck_assert_msg(h_holder_spawn(&holder, h_srv.socket_path, "lf-x",
	    LOCKS_EXCLUSIVE, "lf-client", "lf-owner") == 0, "%s", h_error());
	/* Claims about the peer in a request are ignored. */
	EXPECT_BLOCKING(h_request(w1, "{\"op\":\"acquire\",\"id\":1,"
	    "\"name\":\"lf-x\",\"mode\":\"shared\",\"owner\":\"lf-wowner\","
	    "\"pid\":1,\"uid\":4242,\"gid\":4242,\"token\":5}"));
	h_queue(w2, "lf-x", "exclusive", 2, "second");

	entry = h_listed(w2, "lf-x");
	ck_assert_ptr_nonnull(entry);
	ck_assert_int_eq(h_len(entry, "holders"), 1);
	h = h_member(entry, "holders", 0);
	check_holder(h, holder.pid, "lf-client", "lf-owner", "exclusive");
	ck_assert_int_eq(h_int(h, "token"), holder.token);
	ck_assert_msg(h_num(h, "since") >= before - 1, "since: %s",
	    h_json(h));

	ck_assert_int_eq(h_len(entry, "waiters"), 2);
	wt = h_member(entry, "waiters", 0);
	check_holder(wt, getpid(), "lf-waiter", "lf-wowner", "shared");
	ck_assert_msg(h_get(wt, "token") == NULL, "waiter with a token: %s",
	    h_json(wt));
	wt = h_member(entry, "waiters", 1);
	check_holder(wt, getpid(), "", "second", "exclusive");
	ck_assert_msg(h_get(wt, "token") == NULL, "waiter with a token: %s",
	    h_json(wt));
	ck_assert_msg(h_num(h_member(entry, "waiters", 0), "since") <=
	    h_num(wt, "since"), "waiters not in queue order: %s",
	    h_json(entry));
	h_holder_kill(&holder);
}
END_TEST

START_TEST(test_holder_credentials_come_from_the_socket_peer)
{
	struct h_holder		 holder;
	struct h_conn		*c = h_connect();
	struct json_object	*h;

	if (getuid() != 0)
		return;		/* only root can be someone else */
	if (h_holder_spawn_as(&holder, 65534, 65534, h_srv.socket_path,
	    "cred-x", LOCKS_EXCLUSIVE, "nobody", "") == -1) {
		/* A build tree nobody may enter is no failure of locksd. */
		ck_assert_msg(strstr(h_error(), "connect_failed") != NULL,
		    "%s", h_error());
		fprintf(stderr, "skipped: nobody cannot reach %s\n",
		    h_srv.socket_path);
		return;
	}
	h = h_member(h_listed(c, "cred-x"), "holders", 0);
	ck_assert_int_eq(h_int(h, "pid"), holder.pid);
	ck_assert_int_eq(h_int(h, "uid"), 65534);
	ck_assert_int_eq(h_int(h, "gid"), 65534);
	h_holder_kill(&holder);
}
END_TEST

#define PAGE_NAMES	1200

/* Whether a list reply says more locks follow. */
static int
list_more(struct json_object *r)
{
	struct json_object	*more = h_get(r, "more");

	ck_assert_msg(more != NULL && json_object_is_type(more,
	    json_type_boolean), "no \"more\" in %s", h_json(r));
	return json_object_get_boolean(more);
}

/* Count a page's pg- names, checking they rise past *last; keep the last. */
static size_t
page_count(struct json_object *r, char *last, size_t size)
{
	const char	*name;
	size_t		 i, n = 0;

	for (i = 0; i < h_len(r, "locks"); i++) {
		name = h_str(h_member(r, "locks", i), "name");
		ck_assert_msg(strcmp(name, last) > 0, "%s after %s", name,
		    last);
		snprintf(last, size, "%s", name);
		n += strncmp(name, "pg-", 3) == 0;
	}
	return n;
}

/*
 * A list reply is bounded (at most 1000 locks, and about 256 KiB): the
 * rest comes in pages after the last name, and liblocks reads them all.
 */
START_TEST(test_list_comes_in_bounded_pages_that_liblocks_joins)
{
	struct h_conn		*c = h_connect(), *t = h_connect();
	struct json_object	*r;
	locks_conn		*lc;
	locks_list		*list = NULL;
	char			 owner[257], last[256] = "";
	size_t			 total = 0, i, pages = 0;

	memset(owner, 'o', sizeof owner - 1);
	owner[sizeof owner - 1] = '\0';
	for (i = 0; i < PAGE_NAMES; i++)
		EXPECT_OK(h_request(c, "{\"op\":\"acquire\",\"name\":"
		    "\"pg-%04zu\",\"owner\":\"%s\",\"timeout\":0}", i, owner));

	r = h_request(t, "{\"op\":\"list\"}");
	EXPECT_OK(r);
	ck_assert(list_more(r));
	/* 1200 entries of about 400 bytes: the byte bound ends the page. */
	ck_assert_uint_lt(h_len(r, "locks"), 1000);
	ck_assert_uint_lt(strlen(h_json(r)), 256 * 1024 + 4096);
	for (;;) {
		total += page_count(r, last, sizeof last);
		pages++;
		if (!list_more(r))
			break;
		r = h_request(t, "{\"op\":\"list\",\"after\":\"%s\"}", last);
		EXPECT_OK(r);
	}
	ck_assert_uint_eq(total, PAGE_NAMES);
	ck_assert_uint_ge(pages, 2);

	r = h_request(t, "{\"op\":\"list\",\"limit\":10}");
	EXPECT_LEN(r, "locks", 10);
	ck_assert(list_more(r));
	r = h_request(t, "{\"op\":\"list\",\"limit\":1001}");
	EXPECT_ERROR(r, "bad_request");

	lc = h_lib_conn("pages");
	ck_assert_int_eq(locks_list_get(lc, NULL, &list), LOCKS_OK);
	for (i = 0, total = 0; i < locks_list_count(list); i++)
		total += strncmp(locks_lock_name(locks_list_lock(list, i)),
		    "pg-", 3) == 0;
	ck_assert_uint_eq(total, PAGE_NAMES);
	ck_assert_ptr_null(strstr(locks_list_json(list), "\"more\""));
	locks_list_free(list);
	locks_close(lc);
}
END_TEST

/* Wait until status shows this many connections (others may be closing). */
static struct json_object *
status_settled(struct h_conn *c, int64_t connections)
{
	struct json_object	*r;
	double			 deadline = h_now() + h_slow(2);

	for (;;) {
		r = h_request(c, "{\"op\":\"status\",\"id\":1}");
		EXPECT_OK(r);
		if (h_int(r, "connections") == connections ||
		    h_now() > deadline)
			return r;
		h_sleep(0.01);
	}
}

START_TEST(test_status_reports_counts)
{
	struct h_daemon		 d;
	struct h_conn		*c1, *c2, *c3;
	struct json_object	*r;
	double			 uptime;

	memset(&d, 0, sizeof d);
	ck_assert_msg(h_daemon_start(&d) == 0, "%s", h_error());
	c1 = h_connect_to(d.socket_path);
	r = status_settled(c1, 1);
	EXPECT_ID(r, 1);
	ck_assert_str_eq(h_str(r, "version"), "0.1.0");
	ck_assert_int_eq(h_int(r, "pid"), d.pid);
	ck_assert_msg(h_is(r, "connections", json_type_int) &&
	    h_is(r, "locks_held", json_type_int) &&
	    h_is(r, "waiters", json_type_int) &&
	    h_is(r, "acquired_total", json_type_int),
	    "counts are not integers: %s", h_json(r));
	ck_assert_int_eq(h_int(r, "connections"), 1);
	ck_assert_int_eq(h_int(r, "locks_held"), 0);
	ck_assert_int_eq(h_int(r, "waiters"), 0);
	ck_assert_int_eq(h_int(r, "acquired_total"), 0);
	uptime = h_num(r, "uptime");
	ck_assert_msg(uptime >= 0 && uptime < h_slow(30), "uptime: %s",
	    h_json(r));

	c2 = h_connect_to(d.socket_path);
	c3 = h_connect_to(d.socket_path);
	h_take(c1, "st-x", "exclusive");
	h_take(c2, "st-s", "shared");
	h_take(c3, "st-s", "shared");
	h_queue(c2, "st-x", "exclusive", 1, "");
	h_sleep(0.05);
	r = status_settled(c1, 3);
	ck_assert_int_eq(h_int(r, "connections"), 3);
	ck_assert_int_eq(h_int(r, "locks_held"), 3);
	ck_assert_int_eq(h_int(r, "waiters"), 1);
	ck_assert_int_eq(h_int(r, "acquired_total"), 3);
	ck_assert_msg(h_num(r, "uptime") > uptime, "uptime did not grow: %s",
	    h_json(r));

	h_drop(c1, "st-x");
	h_granted(c2, 1, 2);
	r = h_request(c1, "{\"op\":\"status\"}");
	ck_assert_int_eq(h_int(r, "locks_held"), 3);
	ck_assert_int_eq(h_int(r, "waiters"), 0);
	ck_assert_int_eq(h_int(r, "acquired_total"), 4);

	h_conn_close(c3);
	r = status_settled(c1, 2);
	ck_assert_int_eq(h_int(r, "connections"), 2);
	ck_assert_int_eq(h_int(r, "locks_held"), 2);
	ck_assert_int_eq(h_int(r, "acquired_total"), 4);
	h_conn_close(c1);
	h_conn_close(c2);
	ck_assert_msg(h_daemon_stop(&d) == 0, "%s", h_error());
}
END_TEST

/*
 * Every error code.
 */

START_TEST(test_bad_json_replies_null_id_and_keeps_the_connection)
{
	static const char *lines[] = { "{", "}", "nope", "{'op':'ping'}",
	    "{\"op\":\"ping\",\"id\":1} x", "{\"op\":\"ping\",\"id\":2}}",
	    "{\"op\":\"ping\",\"id\":3,}", "[1,2", "\"unterminated",
	    "{\"op\":\"ping\",\"id\":4}{\"op\":\"ping\",\"id\":5}",
	    "{\"op\":\"ping\" \"id\":6}", "{\"op\":\"ping\",\"id\":07}",
	    "{\"op\":\"ping\",\"id\":NaN}",
	    "{\"op\":\"ping\",\"id\":Infinity}",
	    "{\"op\":\"ping\",\"id\":-Infinity}" };
	static const char	 nul[] = "{\"op\":\"ping\",\"id\":8}\0\n";
	struct h_conn		*c = h_connect();
	struct json_object	*r;
	struct misses		 m;
	size_t			 i;

	memset(&m, 0, sizeof m);
	for (i = 0; i < sizeof lines / sizeof lines[0]; i++) {
		r = h_request(c, "%s", lines[i]);
		ck_assert_msg(r != NULL, "%s: %s", lines[i], h_error());
		if (!error_with_id(r, "bad_json", "null"))
			miss(&m, "%s -> %s", lines[i], h_json(r));
	}
	ck_assert_int_eq(h_send_raw(c, nul, sizeof nul - 1), 0);
	r = h_recv(c, h_slow(2));
	ck_assert_msg(r != NULL, "%s", h_error());
	if (!error_with_id(r, "bad_json", "null"))
		miss(&m, "line with a NUL byte -> %s", h_json(r));
	EXPECT_NO_MISSES(&m);

	r = h_request(c, "{\"op\":\"ping\",\"id\":9}");
	EXPECT_OK(r);
	EXPECT_ID(r, 9);
	EXPECT_QUIET(c, 0.1);
}
END_TEST

START_TEST(test_bad_request_for_malformed_requests)
{
	/* Each line and the id its reply must carry. */
	static const struct {
		const char	*line;
		const char	*id;
	} bad[] = {
		{ "[]", "null" },
		{ "[{\"op\":\"ping\",\"id\":1}]", "null" },
		{ "\"ping\"", "null" },
		{ "42", "null" },
		{ "null", "null" },
		{ "true", "null" },
		{ "{}", "null" },
		{ "{\"id\":1}", "1" },
		{ "{\"id\":2,\"op\":1}", "2" },
		{ "{\"id\":3,\"op\":null}", "3" },
		{ "{\"id\":4,\"op\":[\"ping\"]}", "4" },
		{ "{\"id\":5,\"op\":\"acquire\"}", "5" },
		{ "{\"id\":6,\"op\":\"acquire\",\"name\":7}", "6" },
		{ "{\"id\":7,\"op\":\"acquire\",\"name\":\"br-x\","
		    "\"mode\":\"bogus\"}", "7" },
		{ "{\"id\":8,\"op\":\"acquire\",\"name\":\"br-x\","
		    "\"mode\":1}", "8" },
		{ "{\"id\":9,\"op\":\"acquire\",\"name\":\"br-x\","
		    "\"timeout\":\"1\"}", "9" },
		{ "{\"id\":10,\"op\":\"acquire\",\"name\":\"br-x\","
		    "\"timeout\":-1}", "10" },
		{ "{\"id\":11,\"op\":\"acquire\",\"name\":\"br-x\","
		    "\"timeout\":1e10}", "11" },
		{ "{\"id\":12,\"op\":\"acquire\",\"name\":\"br-x\","
		    "\"timeout\":true}", "12" },
		{ "{\"id\":13,\"op\":\"acquire\",\"name\":\"br-x\","
		    "\"notify_after\":-0.5}", "13" },
		{ "{\"id\":14,\"op\":\"acquire\",\"name\":\"br-x\","
		    "\"notify_after\":\"x\"}", "14" },
		{ "{\"id\":15,\"op\":\"acquire\",\"name\":\"br-x\","
		    "\"owner\":5}", "15" },
		{ "{\"id\":16,\"op\":\"acquire\",\"name\":\"br-x\","
		    "\"owner\":\"a\\u0000b\"}", "16" },
		{ "{\"id\":17,\"op\":\"release\"}", "17" },
		{ "{\"id\":18,\"op\":\"release\",\"name\":1}", "18" },
		{ "{\"id\":19,\"op\":\"list\",\"name\":5}", "19" },
		{ "{\"id\":20,\"op\":\"hello\",\"client\":5}", "20" },
		{ "{\"id\":21,\"op\":\"hello\",\"client\":\"a\\u0000b\"}",
		    "21" },
		{ "{\"id\":22,\"op\":\"acquire\",\"name\":\"br-x\","
		    "\"notify_after\":1e10}", "22" },
		{ "{\"op\":\"ping\",\"id\":[1]}", "null" },
		{ "{\"op\":\"ping\",\"id\":{\"a\":1}}", "null" },
	};
	struct h_conn		*c = h_connect();
	struct json_object	*r;
	struct misses		 m;
	char			*label;
	size_t			 i;

	memset(&m, 0, sizeof m);
	for (i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		r = h_request(c, "%s", bad[i].line);
		ck_assert_msg(r != NULL, "%s: %s", bad[i].line, h_error());
		if (!error_with_id(r, "bad_request", bad[i].id))
			miss(&m, "%s -> %s (want bad_request, id %s)",
			    bad[i].line, h_json(r), bad[i].id);
	}
	EXPECT_NO_MISSES(&m);
	/* None of those acquires left anything behind. */
	ck_assert_ptr_null(h_listed(c, "br-x"));

	/* Labels: 256 bytes are fine, 257 are not. */
	label = h_filled(257, 'o');
	r = h_request(c, "{\"op\":\"acquire\",\"name\":\"br-long\","
	    "\"owner\":\"%s\"}", label);
	EXPECT_ERROR(r, "bad_request");
	r = h_request(c, "{\"op\":\"hello\",\"client\":\"%s\"}", label);
	EXPECT_ERROR(r, "bad_request");
	label[256] = '\0';
	r = h_request(c, "{\"op\":\"acquire\",\"name\":\"br-long\","
	    "\"owner\":\"%s\"}", label);
	EXPECT_OK(r);
	r = h_request(c, "{\"op\":\"hello\",\"client\":\"%s\"}", label);
	EXPECT_OK(r);
	ck_assert_str_eq(h_str(h_member(h_listed(c, "br-long"), "holders", 0),
	    "owner"), label);
	free(label);

	/* Seconds: up to 1e9 is fine. */
	r = h_request(c, "{\"op\":\"acquire\",\"name\":\"br-max\","
	    "\"timeout\":1e9,\"notify_after\":1e9}");
	EXPECT_OK(r);
	r = h_request(c, "{\"op\":\"ping\",\"id\":99}");
	EXPECT_OK(r);
}
END_TEST

START_TEST(test_unknown_op_is_reported_with_its_id)
{
	static const char	*ops[] = { "frobnicate", "", "PING", "Acquire",
	    "ping " };
	struct h_conn		*c = h_connect();
	struct json_object	*r;
	size_t			 i;

	for (i = 0; i < sizeof ops / sizeof ops[0]; i++) {
		r = h_request(c, "{\"op\":\"%s\",\"id\":%zu}", ops[i], i);
		EXPECT_ERROR(r, "unknown_op");
		EXPECT_ID(r, (int64_t)i);
	}
	EXPECT_OK(h_request(c, "{\"op\":\"ping\"}"));
}
END_TEST

START_TEST(test_invalid_name_rejects_paths_and_bad_bytes)
{
	static const char	*bad[] = { "..", ".", ".x", ".tokens",
	    "", "a\\u0000b", "a b", "caf\\u00e9", "/etc/\\u0000",
	    "x\\n", "*", "a\\\\b", "tab\\there" };
	struct h_conn		*c = h_connect();
	struct json_object	*r;
	struct misses		 m;
	char			*name, path[PATH_MAX];
	struct stat		 sb;
	size_t			 i;

	memset(&m, 0, sizeof m);
	for (i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		r = h_request(c, "{\"op\":\"acquire\",\"id\":1,"
		    "\"name\":\"%s\"}", bad[i]);
		if (!error_with_id(r, "invalid_name", "1"))
			miss(&m, "acquire \"%s\" -> %s", bad[i], h_json(r));
		r = h_request(c, "{\"op\":\"release\",\"id\":2,"
		    "\"name\":\"%s\"}", bad[i]);
		if (!error_with_id(r, "invalid_name", "2"))
			miss(&m, "release \"%s\" -> %s", bad[i], h_json(r));
		r = h_request(c, "{\"op\":\"list\",\"id\":3,"
		    "\"name\":\"%s\"}", bad[i]);
		if (!error_with_id(r, "invalid_name", "3"))
			miss(&m, "list \"%s\" -> %s", bad[i], h_json(r));
	}
	EXPECT_NO_MISSES(&m);
	name = h_filled(201, 'n');
	EXPECT_ERROR(h_request(c, "{\"op\":\"acquire\",\"name\":\"%s\"}",
	    name), "invalid_name");
	name[200] = '\0';
	EXPECT_OK(h_request(c, "{\"op\":\"acquire\",\"name\":\"%s\"}", name));
	ck_assert_int_eq(h_file_mode(h_srv.lock_dir, name), 0644);
	free(name);
	EXPECT_OK(h_request(c, "{\"op\":\"acquire\","
	    "\"name\":\"Ab9._:@+-z\"}"));
	ck_assert_int_eq(h_file_mode(h_srv.lock_dir, "Ab9._:@+-z"), 0644);

	/* Nothing was created for the bad names. */
	snprintf(path, sizeof path, "%s/.x", h_srv.lock_dir);
	ck_assert_int_eq(lstat(path, &sb), -1);
	snprintf(path, sizeof path, "%s/a", h_srv.lock_dir);
	ck_assert_int_eq(lstat(path, &sb), -1);
	snprintf(path, sizeof path, "%s/x", h_srv.dir);
	ck_assert_int_eq(lstat(path, &sb), -1);
}
END_TEST

START_TEST(test_too_large_line_is_refused_and_the_connection_closed)
{
	struct h_conn		*big = h_connect(), *w = h_connect();
	struct h_conn		*nonl = h_connect();
	struct json_object	*r;
	char			*line;
	size_t			 len;

	h_take(big, "big-x", "exclusive");
	h_queue(w, "big-x", "exclusive", 1, "");

	/* 65537 bytes, then the newline. */
	line = h_filled(PROTO_MAX_LINE + 1, ' ');
	memcpy(line, "{\"op\":\"ping\",\"id\":1}", 20);
	len = strlen(line);
	ck_assert_int_eq(len, 65537);
	/*
	 * The daemon may answer and close before it has read it all, so a
	 * failed write is no failure here.
	 */
	(void)h_send(big, "%s", line);
	r = h_recv(big, h_slow(2));
	EXPECT_ERROR(r, "too_large");
	EXPECT_NULL_ID(r);
	ck_assert_msg(h_recv_closed(big, h_slow(2)), "%s", h_error());
	/* Closing released everything the connection had. */
	h_granted(w, 1, 2);

	/* 65537 bytes without a newline are already too many. */
	(void)h_send_raw(nonl, line, len);
	r = h_recv(nonl, h_slow(2));
	EXPECT_ERROR(r, "too_large");
	EXPECT_NULL_ID(r);
	ck_assert_msg(h_recv_closed(nonl, h_slow(2)), "%s", h_error());
	free(line);
}
END_TEST

START_TEST(test_line_of_exactly_65536_bytes_is_accepted)
{
	struct h_conn		*c = h_connect();
	struct json_object	*r;
	char			*line, *two;
	size_t			 len;
	int			 n;

	/* A ping padded with spaces. */
	line = h_filled(PROTO_MAX_LINE, ' ');
	memcpy(line, "{\"op\":\"ping\",\"id\":1}", 20);
	ck_assert_int_eq(strlen(line), 65536);
	r = h_request(c, "%s", line);
	EXPECT_OK(r);
	EXPECT_ID(r, 1);

	/* A long unknown field. */
	memset(line, 'p', PROTO_MAX_LINE);
	n = snprintf(line, 32, "{\"op\":\"ping\",\"id\":2,\"pad\":\"");
	line[n] = 'p';
	memcpy(line + PROTO_MAX_LINE - 2, "\"}", 2);
	ck_assert_int_eq(strlen(line), 65536);
	r = h_request(c, "%s", line);
	EXPECT_OK(r);
	EXPECT_ID(r, 2);

	/* Two of them in one write, then a ping. */
	len = 2 * (PROTO_MAX_LINE + 1);
	two = malloc(len + 1);
	ck_assert_ptr_nonnull(two);
	memcpy(two, line, PROTO_MAX_LINE);
	two[PROTO_MAX_LINE] = '\n';
	memcpy(two + PROTO_MAX_LINE + 1, line, PROTO_MAX_LINE);
	two[len - 1] = '\n';
	ck_assert_int_eq(h_send_raw(c, two, len), 0);
	EXPECT_ID(h_recv(c, h_slow(2)), 2);
	EXPECT_ID(h_recv(c, h_slow(2)), 2);
	r = h_request(c, "{\"op\":\"ping\",\"id\":3}");
	EXPECT_OK(r);
	EXPECT_ID(r, 3);
	free(two);
	free(line);
}
END_TEST

START_TEST(test_limit_when_a_connection_takes_too_many_names)
{
	enum { N = 4097 };
	struct h_conn		*c = h_connect(), *other;
	struct json_object	*r;
	char			*batch, *p;
	int			 i, first_limit = -1;

	batch = malloc(N * 64);
	ck_assert_ptr_nonnull(batch);
	p = batch;
	for (i = 0; i < N; i++)
		p += sprintf(p, "{\"op\":\"acquire\",\"id\":%d,"
		    "\"name\":\"cap-%04d\",\"timeout\":0}\n", i, i);
	ck_assert_int_eq(h_send_raw(c, batch, (size_t)(p - batch)), 0);
	free(batch);
	for (i = 0; i < N; i++) {
		r = h_recv(c, h_slow(10));
		ck_assert_msg(r != NULL, "reply %d: %s", i, h_error());
		EXPECT_ID(r, i);
		if (h_ok(r))
			ck_assert_msg(first_limit == -1,
			    "granted %d after a limit at %d", i, first_limit);
		else {
			EXPECT_ERROR(r, "limit");
			if (first_limit == -1)
				first_limit = i;
		}
	}
	ck_assert_msg(first_limit != -1, "4097 names and no limit");
	/* The daemon still serves everyone, and this connection too. */
	other = h_connect();
	EXPECT_OK(h_request(other, "{\"op\":\"acquire\",\"name\":\"cap-o\"}"));
	h_drop(c, "cap-0000");
	EXPECT_OK(h_request(c, "{\"op\":\"acquire\",\"name\":\"cap-again\","
	    "\"timeout\":0}"));
}
END_TEST

START_TEST(test_internal_when_the_lock_file_cannot_be_opened)
{
	struct h_conn		*c = h_connect();
	struct json_object	*r;
	char			 path[PATH_MAX], target[PATH_MAX];
	struct stat		 sb;

	/* A directory where the lock file should be. */
	snprintf(path, sizeof path, "%s/int-dir", h_srv.lock_dir);
	ck_assert_int_eq(mkdir(path, 0755), 0);
	r = h_request(c, "{\"op\":\"acquire\",\"id\":1,\"name\":\"int-dir\"}");
	EXPECT_ERROR(r, "internal");
	EXPECT_ID(r, 1);
	ck_assert_msg(strlen(h_str(h_get(r, "error"), "message")) > 0,
	    "no message: %s", h_json(r));
	ck_assert_ptr_null(h_listed(c, "int-dir"));

	/* A symlink is never followed. */
	snprintf(path, sizeof path, "%s/int-link", h_srv.lock_dir);
	snprintf(target, sizeof target, "%s/int-target", h_srv.dir);
	ck_assert_int_eq(symlink(target, path), 0);
	r = h_request(c, "{\"op\":\"acquire\",\"id\":2,"
	    "\"name\":\"int-link\"}");
	EXPECT_ERROR(r, "internal");
	ck_assert_int_eq(lstat(target, &sb), -1);
	ck_assert_ptr_null(h_listed(c, "int-link"));
	EXPECT_OK(h_request(c, "{\"op\":\"ping\"}"));
}
END_TEST

#define NOBODY	65534	/* nobody's uid, and its group's gid */

/*
 * Start d as nobody in a directory of its own under the run's, or say why
 * not: a broker as root may open any file, so only another user shows
 * what a file the broker may not read looks like to its client.
 */
static int
start_as_nobody(struct h_daemon *d, const char *why)
{
	char	 dir[128];

	if (geteuid() != 0) {
		fprintf(stderr, "skipped (%s): only root can run locksd as "
		    "another user\n", why);
		return 0;
	}
	memset(d, 0, sizeof *d);
	snprintf(dir, sizeof dir, "%s/nobody-XXXXXX", h_run_dir());
	ck_assert_msg(mkdtemp(dir) != NULL, "mkdtemp %s: %s", dir,
	    strerror(errno));
	ck_assert_int_eq(chown(dir, NOBODY, NOBODY), 0);
	ck_assert_int_eq(chmod(dir, 0711), 0);
	d->uid = NOBODY;
	d->gid = NOBODY;
	if (h_daemon_start_in(d, dir) == -1) {
		/* A build tree nobody cannot search is no failure of locksd. */
		fprintf(stderr, "skipped (%s): locksd as nobody did not start "
		    "in %s: %s\n", why, dir, h_error());
		h_daemon_dump_log(d);
		return 0;
	}
	return 1;
}

/* The reply is an internal error whose message holds every one of want. */
static void
expect_message_has(struct json_object *r, const char *const *want)
{
	const char	*msg;

	EXPECT_ERROR(r, "internal");
	msg = h_str(h_get(r, "error"), "message");
	ck_assert_ptr_nonnull(msg);
	for (; *want != NULL; want++)
		ck_assert_msg(strstr(msg, *want) != NULL,
		    "expected \"%s\" in \"%s\"", *want, msg);
}

START_TEST(test_unreadable_lock_file_error_names_path_owner_mode_and_fix)
{
	struct h_daemon	 d;
	struct h_conn	*c;
	char		 path[PATH_MAX], mode_text[64], runs_as[64];
	char		 line[PATH_MAX + 64];
	int		 fd;

	if (!start_as_nobody(&d, "a lock file the broker may not read"))
		return;
	/* What a root job under umask 077 leaves behind. */
	snprintf(path, sizeof path, "%s/backup", d.lock_dir);
	fd = open(path, O_WRONLY | O_CREAT | O_EXCL, 0600);
	ck_assert_int_ge(fd, 0);
	close(fd);
	ck_assert_int_eq(chmod(path, 0600), 0);
	ck_assert_ptr_nonnull(c = h_conn_open(d.socket_path));
	snprintf(mode_text, sizeof mode_text, "(owner root, mode 0600)");
	snprintf(runs_as, sizeof runs_as, "runs as uid %d (nobody)", NOBODY);
	expect_message_has(h_request(c, "{\"op\":\"acquire\",\"id\":1,"
	    "\"name\":\"backup\"}"), (const char *const []){
	    "cannot open the lock file", path, mode_text,
	    "Permission denied", runs_as, "needs read access",
	    "chmod a+r it or remove it", NULL });
	/* A path to that file is the name's lock, and says the same. */
	snprintf(line, sizeof line, "{\"op\":\"acquire\",\"id\":3,"
	    "\"name\":\"%s\"}\n", path);
	ck_assert_int_ge(fd = open(path, O_RDONLY | O_CLOEXEC), 0);
	h_send_with_fds(c, line, &fd, 1);
	close(fd);
	expect_message_has(h_recv(c, H_REPLY_SECS), (const char *const []){
	    "cannot open the lock file", path, mode_text, "needs read access",
	    NULL });

	/* The fix works: the same name is usable at once. */
	ck_assert_int_eq(chmod(path, 0644), 0);
	EXPECT_OK(h_request(c, "{\"op\":\"acquire\",\"id\":2,"
	    "\"name\":\"backup\"}"));
	h_conn_close(c);
	ck_assert_msg(h_daemon_stop(&d) == 0, "%s", h_error());
}
END_TEST

START_TEST(test_unwritable_lock_dir_error_names_the_dir_and_fix)
{
	struct h_daemon	 d;
	struct h_conn	*c;
	char		 path[PATH_MAX], dir_text[PATH_MAX + 32];

	if (!start_as_nobody(&d, "a lock dir the broker may not write"))
		return;
	ck_assert_int_eq(chown(d.lock_dir, 0, 0), 0);
	ck_assert_int_eq(chmod(d.lock_dir, 0755), 0);
	snprintf(path, sizeof path, "%s/fresh", d.lock_dir);
	snprintf(dir_text, sizeof dir_text, "needs write access to %s",
	    d.lock_dir);
	ck_assert_ptr_nonnull(c = h_conn_open(d.socket_path));
	expect_message_has(h_request(c, "{\"op\":\"acquire\",\"id\":1,"
	    "\"name\":\"fresh\"}"), (const char *const []){
	    "cannot create the lock file", path, "Permission denied",
	    dir_text, NULL });
	h_conn_close(c);
	ck_assert_int_eq(chown(d.lock_dir, NOBODY, NOBODY), 0);
	ck_assert_msg(h_daemon_stop(&d) == 0, "%s", h_error());
}
END_TEST

/*
 * Lock files and plain flock(1).
 */

START_TEST(test_exclusive_grant_excludes_flock)
{
	struct h_conn	*c = h_connect();

	h_take(c, "fl-x", "exclusive");
	ck_assert_int_eq(h_system("flock -n '%s/fl-x' true",
	    h_srv.lock_dir), 1);
	ck_assert_int_eq(h_system("flock -s -n '%s/fl-x' true",
	    h_srv.lock_dir), 1);
	h_drop(c, "fl-x");
	ck_assert_int_eq(h_system("flock -n '%s/fl-x' true",
	    h_srv.lock_dir), 0);
	ck_assert_int_eq(h_system("flock -s -n '%s/fl-x' true",
	    h_srv.lock_dir), 0);
}
END_TEST

START_TEST(test_shared_grant_admits_only_shared_flock)
{
	struct h_conn	*c = h_connect(), *d = h_connect();

	h_take(c, "fl-s", "shared");
	h_take(d, "fl-s", "shared");
	ck_assert_int_eq(h_system("flock -s -n '%s/fl-s' true",
	    h_srv.lock_dir), 0);
	ck_assert_int_eq(h_system("flock -x -n '%s/fl-s' true",
	    h_srv.lock_dir), 1);
	ck_assert_int_eq(h_system("flock -n '%s/fl-s' true",
	    h_srv.lock_dir), 1);
	h_drop(c, "fl-s");
	ck_assert_int_eq(h_system("flock -x -n '%s/fl-s' true",
	    h_srv.lock_dir), 1);
	h_drop(d, "fl-s");
	ck_assert_int_eq(h_system("flock -x -n '%s/fl-s' true",
	    h_srv.lock_dir), 0);
}
END_TEST

START_TEST(test_handoff_between_broker_clients_keeps_the_flock)
{
	struct h_conn	*a = h_connect(), *b = h_connect();
	int		 i;

	h_take(a, "fl-hand", "exclusive");
	for (i = 0; i < 5; i++) {
		h_queue(b, "fl-hand", "exclusive", i, "");
		h_drop(a, "fl-hand");
		h_granted(b, i, 2);
		ck_assert_int_eq(h_system("flock -n '%s/fl-hand' true",
		    h_srv.lock_dir), 1);
		h_queue(a, "fl-hand", "exclusive", 0, "");
		h_drop(b, "fl-hand");
		h_granted(a, 0, 2);
		ck_assert_int_eq(h_system("flock -n '%s/fl-hand' true",
		    h_srv.lock_dir), 1);
	}
}
END_TEST

/* Start flock(1) on lock dir/name holding for secs; returns once it holds. */
static FILE *
outside_flock(const char *flag, const char *name, double secs)
{
	char	 cmd[PATH_MAX + 128], line[32];
	FILE	*fp;

	snprintf(cmd, sizeof cmd, "exec flock %s '%s/%s' sh -c "
	    "'echo locked; exec sleep %.1f'", flag, h_srv.lock_dir, name, secs);
	fp = popen(cmd, "r");
	ck_assert_ptr_nonnull(fp);
	ck_assert_msg(fgets(line, sizeof line, fp) != NULL &&
	    strcmp(line, "locked\n") == 0, "flock(1) did not start");
	return fp;
}

START_TEST(test_outside_flock_holder_makes_acquire_wait)
{
	struct h_conn		*c = h_connect(), *t = h_connect();
	struct json_object	*r, *entry;
	FILE			*fp;
	double			 t0;

	fp = outside_flock("-x", "fl-out", 1.0);
	t0 = h_now();
	r = h_request(c, "{\"op\":\"acquire\",\"id\":1,\"name\":\"fl-out\"}");
	EXPECT_BLOCKING(r);
	ck_assert_int_eq(h_int(r, "position"), 1);
	ck_assert_msg(h_is(r, "holders", json_type_array), "holders: %s",
	    h_json(r));

	/* Shown while a broker client waits: the outside holder, the waiter. */
	entry = h_listed(t, "fl-out");
	ck_assert_ptr_nonnull(entry);
	ck_assert_int_eq(h_len(entry, "holders"), 1);
	ck_assert(h_is(h_idx(h_get(entry, "holders"), 0), "external",
	    json_type_boolean));
	ck_assert_str_eq(h_str(h_idx(h_get(entry, "holders"), 0), "command"),
	    "flock");
	ck_assert_int_eq(h_len(entry, "waiters"), 1);
	EXPECT_ERROR(h_request(t, "{\"op\":\"acquire\",\"name\":\"fl-out\","
	    "\"timeout\":0}"), "timeout");

	r = h_recv(c, h_slow(3));
	EXPECT_OK(r);
	EXPECT_ID(r, 1);
	ck_assert_msg(h_now() - t0 >= 0.5, "granted while flock(1) held it");
	ck_assert_msg(h_num(r, "waited") >= 0.5, "waited: %s", h_json(r));
	ck_assert_int_eq(pclose(fp), 0);
	ck_assert_int_eq(h_system("flock -n '%s/fl-out' true",
	    h_srv.lock_dir), 1);
}
END_TEST

START_TEST(test_outside_flock_holder_fails_timeout_zero_at_once)
{
	struct h_conn		*c = h_connect();
	struct json_object	*r;
	FILE			*fp;

	fp = outside_flock("-x", "fl-try", 0.5);
	r = h_request(c, "{\"op\":\"acquire\",\"id\":1,\"name\":\"fl-try\","
	    "\"timeout\":0}");
	EXPECT_ERROR(r, "timeout");
	ck_assert_ptr_null(h_listed(c, "fl-try"));
	r = h_request(c, "{\"op\":\"acquire\",\"id\":2,\"name\":\"fl-try\","
	    "\"timeout\":0.2,\"notify_after\":5}");
	EXPECT_ERROR(r, "timeout");
	ck_assert_ptr_null(h_listed(c, "fl-try"));
	ck_assert_int_eq(pclose(fp), 0);
}
END_TEST

START_TEST(test_outside_shared_flock_blocks_only_exclusive)
{
	struct h_conn		*s = h_connect(), *x = h_connect();
	struct json_object	*r;
	FILE			*fp;

	fp = outside_flock("-s", "fl-osh", 1.0);
	h_take(s, "fl-osh", "shared");
	EXPECT_ERROR(h_request(x, "{\"op\":\"acquire\",\"name\":\"fl-osh\","
	    "\"timeout\":0}"), "timeout");
	ck_assert_int_eq(h_send(x, "{\"op\":\"acquire\",\"id\":1,"
	    "\"name\":\"fl-osh\",\"notify_after\":30}"), 0);
	h_drop(s, "fl-osh");
	r = h_recv(x, h_slow(3));
	EXPECT_OK(r);
	EXPECT_ID(r, 1);
	ck_assert_int_eq(pclose(fp), 0);
}
END_TEST

START_TEST(test_lock_files_are_0644_and_never_unlinked)
{
	struct h_conn	*c = h_connect();
	char		 path[PATH_MAX];
	struct stat	 sb;
	ino_t		 ino;

	snprintf(path, sizeof path, "%s/file-x", h_srv.lock_dir);
	h_take(c, "file-x", "exclusive");
	ck_assert_int_eq(lstat(path, &sb), 0);
	ck_assert_msg(S_ISREG(sb.st_mode), "not a regular file");
	ck_assert_int_eq(sb.st_mode & 07777, 0644);
	ino = sb.st_ino;
	h_drop(c, "file-x");
	ck_assert_int_eq(lstat(path, &sb), 0);
	ck_assert_int_eq(sb.st_ino, ino);

	h_take(c, "file-x", "shared");
	h_conn_close(c);
	c = h_connect();
	EXPECT_OK(h_request(c, "{\"op\":\"ping\"}"));
	ck_assert_int_eq(lstat(path, &sb), 0);
	ck_assert_int_eq(sb.st_ino, ino);
}
END_TEST

static Suite *
wire_suite(void)
{
	Suite	*s = suite_create("wire");
	TCase	*tc;

	tc = h_daemon_tcase("session", 60);
	tcase_add_test(tc, test_hello_reports_server_version_protocol_and_pid);
	tcase_add_test(tc, test_hello_is_optional_and_sets_the_client_label);
	tcase_add_test(tc, test_ping_replies_ok_and_nothing_else);
	tcase_add_test(tc, test_replies_echo_every_kind_of_scalar_id);
	tcase_add_test(tc, test_long_ids_are_echoed_whole);
	tcase_add_test(tc, test_blank_lines_are_ignored);
	tcase_add_test(tc, test_unknown_request_fields_are_ignored);
	tcase_add_test(tc, test_every_taken_id_comes_back_byte_for_byte);
	tcase_add_test(tc, test_ids_that_cannot_come_back_are_bad_request);
	tcase_add_test(tc, test_ids_longer_than_1024_bytes_are_bad_request);
	tcase_add_test(tc, test_labels_that_are_not_utf8_are_refused);
	tcase_add_test(tc,
	    test_nesting_depth_of_eight_is_accepted_and_nine_is_not);
	suite_add_tcase(s, tc);

	tc = h_daemon_tcase("acquire", 60);
	tcase_add_test(tc,
	    test_acquire_grant_reports_name_mode_token_and_waited);
	tcase_add_test(tc, test_tokens_strictly_increase_across_grants);
	tcase_add_test(tc,
	    test_exclusive_holder_blocks_second_with_blocking_event);
	tcase_add_test(tc, test_blocking_event_reports_queue_position);
	tcase_add_test(tc, test_notify_after_delays_the_single_blocking_event);
	tcase_add_test(tc,
	    test_timeout_fails_the_acquire_and_leaves_nothing_queued);
	tcase_add_test(tc, test_timeout_after_the_event_still_fails);
	tcase_add_test(tc, test_timeout_zero_fails_at_once_without_event);
	tcase_add_test(tc, test_release_hands_off_to_next_waiter_at_once);
	tcase_add_test(tc,
	    test_release_of_waiting_name_cancels_the_wait_first);
	tcase_add_test(tc, test_release_of_name_not_held_is_not_held);
	tcase_add_test(tc, test_already_held_for_held_and_waiting_names);
	tcase_add_test(tc,
	    test_waiting_acquire_does_not_hold_up_pipelined_requests);
	tcase_add_test(tc, test_waiters_are_granted_in_fifo_order);
	tcase_add_test(tc, test_shared_run_at_queue_head_is_granted_together);
	tcase_add_test(tc, test_shared_waits_behind_queued_exclusive);
	tcase_add_test(tc, test_shared_joins_shared_holders_when_nobody_waits);
	suite_add_tcase(s, tc);

	tc = h_daemon_tcase("lifetime", 60);
	tcase_add_test(tc,
	    test_closing_connection_releases_locks_and_cancels_waits);
	tcase_add_test(tc, test_kill_9_of_holder_process_releases_its_lock);
	tcase_add_test(tc,
	    test_half_written_request_then_disconnect_releases_everything);
	suite_add_tcase(s, tc);

	tc = h_daemon_tcase("list", 60);
	tcase_add_test(tc,
	    test_list_shows_only_locks_with_holders_or_waiters_sorted);
	tcase_add_test(tc, test_list_reports_holder_and_waiter_fields);
	tcase_add_test(tc, test_list_comes_in_bounded_pages_that_liblocks_joins);
	tcase_add_test(tc, test_holder_credentials_come_from_the_socket_peer);
	suite_add_tcase(s, tc);

	/* Exact counts want a daemon of their own. */
	tc = h_tcase("status", 60);
	tcase_add_test(tc, test_status_reports_counts);
	suite_add_tcase(s, tc);

	tc = h_daemon_tcase("errors", 60);
	tcase_add_test(tc,
	    test_bad_json_replies_null_id_and_keeps_the_connection);
	tcase_add_test(tc, test_bad_request_for_malformed_requests);
	tcase_add_test(tc, test_unknown_op_is_reported_with_its_id);
	tcase_add_test(tc, test_invalid_name_rejects_paths_and_bad_bytes);
	tcase_add_test(tc,
	    test_too_large_line_is_refused_and_the_connection_closed);
	tcase_add_test(tc, test_line_of_exactly_65536_bytes_is_accepted);
	tcase_add_test(tc, test_limit_when_a_connection_takes_too_many_names);
	tcase_add_test(tc, test_internal_when_the_lock_file_cannot_be_opened);
	tcase_add_test(tc,
	    test_unreadable_lock_file_error_names_path_owner_mode_and_fix);
	tcase_add_test(tc,
	    test_unwritable_lock_dir_error_names_the_dir_and_fix);
	suite_add_tcase(s, tc);

	tc = h_daemon_tcase("flock", 60);
	tcase_add_test(tc, test_exclusive_grant_excludes_flock);
	tcase_add_test(tc, test_shared_grant_admits_only_shared_flock);
	tcase_add_test(tc, test_handoff_between_broker_clients_keeps_the_flock);
	tcase_add_test(tc, test_outside_flock_holder_makes_acquire_wait);
	tcase_add_test(tc,
	    test_outside_flock_holder_fails_timeout_zero_at_once);
	tcase_add_test(tc, test_outside_shared_flock_blocks_only_exclusive);
	tcase_add_test(tc, test_lock_files_are_0644_and_never_unlinked);
	suite_add_tcase(s, tc);
	return s;
}

/* The tests run forked: see harness.h. */
int
main(void)
{
	return h_run_suite(wire_suite());
}
