/*
 * Unit tests for the protocol codec and the name rules (protocol.c), the
 * hand-written formats (format.c) and the fast path (scan.c).
 */

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <check.h>

#include "protocol.h"
#include "unit.h"

#define NELEMS(a)	(sizeof (a) / sizeof (a)[0])

/* Parse a line and decode it; returns the error and fills r. */
static enum proto_error
decode(const char *line, struct json_object **ret_obj,
    struct proto_request *r, const char **ret_msg)
{
	struct json_tokener	*tok = proto_tokener_new();

	ck_assert_int_eq(proto_parse_line(tok, line, strlen(line), ret_obj), 0);
	json_tokener_free(tok);
	return proto_request_decode(*ret_obj, r, ret_msg);
}

static enum proto_error
decode_error(const char *line)
{
	struct json_object	*obj;
	struct proto_request	 r;
	const char		*msg = NULL;
	enum proto_error	 error;

	error = decode(line, &obj, &r, &msg);
	if (error != PROTO_OK)
		ck_assert_ptr_nonnull(msg);
	json_object_put(obj);
	return error;
}

static int
parses(const char *line, size_t len)
{
	struct json_tokener	*tok = proto_tokener_new();
	struct json_object	*obj = NULL;
	int			 rc;

	rc = proto_parse_line(tok, line, len, &obj);
	json_tokener_free(tok);
	json_object_put(obj);
	return rc == 0;
}

START_TEST(test_name_accepts_allowed_characters)
{
	const char	*name = "Ab9._:@+-z";
	char		 longest[PROTO_MAX_NAME + 1];

	ck_assert(proto_name_valid(name, strlen(name)));
	ck_assert(proto_name_valid("a", 1));
	memset(longest, 'x', PROTO_MAX_NAME);
	ck_assert(proto_name_valid(longest, PROTO_MAX_NAME));
}
END_TEST

START_TEST(test_target_is_a_name_or_a_path)
{
	char	 path[PROTO_MAX_PATH + 2];

	ck_assert(proto_target_valid("backup", 6));
	ck_assert(!proto_target_valid(".x", 2));
	ck_assert(proto_target_valid("a/b", 3));
	ck_assert(proto_target_valid("/var/lock/caf\xc3\xa9 x", 17));
	ck_assert(!proto_target_valid("/a\0b", 4));
	memset(path, 'p', sizeof path);
	path[0] = '/';
	ck_assert(proto_target_valid(path, PROTO_MAX_PATH));
	ck_assert(!proto_target_valid(path, PROTO_MAX_PATH + 1));
	ck_assert(proto_is_path("a/b") && !proto_is_path("ab"));
}
END_TEST

START_TEST(test_name_rejects_paths_and_bad_bytes)
{
	const char	*bad[] = { "", ".", "..", ".hidden", "a/b", "/etc",
	    "../x", "a b", "caf\xc3\xa9", "a*", "a\\b", "tab\there", "x\n" };
	char		 toolong[PROTO_MAX_NAME + 1];
	size_t		 i;

	for (i = 0; i < sizeof bad / sizeof bad[0]; i++)
		ck_assert_msg(!proto_name_valid(bad[i], strlen(bad[i])),
		    "accepted \"%s\"", bad[i]);
	ck_assert(!proto_name_valid("a\0b", 3));
	ck_assert(!proto_name_valid(NULL, 0));
	memset(toolong, 'x', sizeof toolong);
	ck_assert(!proto_name_valid(toolong, sizeof toolong));
	ck_assert(proto_name_valid("a..b", 4));
}
END_TEST

START_TEST(test_parse_line_rejects_garbage)
{
	ck_assert(parses("{\"op\":\"ping\"}", 13));
	ck_assert(parses("{\"op\":\"ping\"}  \r", 16));
	ck_assert(parses("42", 2));
	ck_assert(!parses("{\"op\":\"ping\"} x", 15));
	ck_assert(!parses("{\"op\":\"ping\"}{}", 15));
	ck_assert(!parses("{\"op\":", 6));
	ck_assert(!parses("not json", 8));
	ck_assert(!parses("{'op':'ping'}", 13));
	ck_assert(!parses("{\"op\":\"ping\"}\0garbage", 21));
	ck_assert(!parses("\0", 1));
	ck_assert(parses("null", 4));
	ck_assert(!parses("null x", 6));
	ck_assert(!parses("{\"id\":NaN}", 11));
	ck_assert(!parses("[1,-Infinity]", 13));
	ck_assert(!parses("{\"a\":{\"b\":[Infinity]}}", 23));
}
END_TEST

/*
 * A line cut off after a high surrogate escape leaves nothing behind in
 * the tokener for the next line (json-c 0.16 keeps it past a reset).
 */
START_TEST(test_parse_line_forgets_a_cut_off_surrogate)
{
	static const char *const cut[] = { "{\"x\":\"\\ud800",
	    "{\"x\":\"\\ud800\\", "\"\\ud800\\u00", "{\"x\":\"\\udbff\\uzz" };
	struct json_tokener	*tok = proto_tokener_new();
	struct proto_scratch	 sc;
	struct proto_request	 r;
	struct json_object	*obj;
	const char		*msg, *text;
	const char		*line = "{\"id\":\"\\u0041\",\"op\":\"hello\","
	    "\"client\":\"\\u0015x\"}";
	size_t			 i, len;

	for (i = 0; i < NELEMS(cut); i++) {
		ck_assert_int_eq(proto_parse_line(tok, cut[i], strlen(cut[i]),
		    &obj), -1);
		ck_assert_int_eq(proto_request_parse(tok, line, strlen(line),
		    &sc, &r, &obj, &msg), PROTO_OK);
		ck_assert_str_eq(r.client, "\x15x");
		text = proto_id_text(r.id, &len);
		ck_assert(len == 3 && memcmp(text, "\"A\"", 3) == 0);
		json_object_put(obj);
		ck_assert_int_eq(proto_request_parse(tok, cut[i],
		    strlen(cut[i]), &sc, &r, &obj, &msg), PROTO_E_BAD_JSON);
		ck_assert_int_eq(proto_request_parse(tok, line, strlen(line),
		    &sc, &r, &obj, &msg), PROTO_OK);
		ck_assert_str_eq(r.client, "\x15x");
		json_object_put(obj);
	}
	json_tokener_free(tok);
}
END_TEST

START_TEST(test_parse_line_limits_depth)
{
	char	 deep[64];
	int	 i, depth = PROTO_MAX_DEPTH + 1;

	for (i = 0; i < depth; i++)
		deep[i] = '[';
	for (i = 0; i < depth; i++)
		deep[depth + i] = ']';
	ck_assert(!parses(deep, 2 * (size_t)depth));
	ck_assert(parses(deep + 1, 2 * (size_t)depth - 2));
}
END_TEST

START_TEST(test_decode_acquire_defaults)
{
	struct json_object	*obj;
	struct proto_request	 r;
	const char		*msg;

	ck_assert_int_eq(decode("{\"op\":\"acquire\",\"name\":\"db\"}", &obj,
	    &r, &msg), PROTO_OK);
	ck_assert_int_eq(r.op, PROTO_OP_ACQUIRE);
	ck_assert_str_eq(r.name, "db");
	ck_assert_int_eq(r.mode, PROTO_EXCLUSIVE);
	ck_assert(r.timeout < 0);
	ck_assert(r.notify_after == 0);
	ck_assert_str_eq(r.owner, "");
	ck_assert_ptr_null(r.id);
	json_object_put(obj);
}
END_TEST

START_TEST(test_decode_acquire_all_fields)
{
	struct json_object	*obj;
	struct proto_request	 r;
	const char		*msg;

	ck_assert_int_eq(decode("{\"id\":\"a1\",\"op\":\"acquire\","
	    "\"name\":\"db\",\"mode\":\"shared\",\"timeout\":1.5,"
	    "\"notify_after\":2,\"owner\":\"me\",\"extra\":[1]}", &obj, &r,
	    &msg), PROTO_OK);
	ck_assert_str_eq(json_object_get_string(r.id), "a1");
	ck_assert_int_eq(r.mode, PROTO_SHARED);
	ck_assert(r.timeout == 1.5);
	ck_assert(r.notify_after == 2);
	ck_assert_str_eq(r.owner, "me");
	json_object_put(obj);
}
END_TEST

START_TEST(test_decode_null_timeout_waits_forever)
{
	struct json_object	*obj;
	struct proto_request	 r;
	const char		*msg;

	ck_assert_int_eq(decode("{\"op\":\"acquire\",\"name\":\"db\","
	    "\"timeout\":null}", &obj, &r, &msg), PROTO_OK);
	ck_assert(r.timeout < 0);
	json_object_put(obj);
	ck_assert_int_eq(decode("{\"op\":\"acquire\",\"name\":\"db\","
	    "\"timeout\":0}", &obj, &r, &msg), PROTO_OK);
	ck_assert(r.timeout == 0);
	json_object_put(obj);
}
END_TEST

START_TEST(test_decode_rejects_bad_fields)
{
	char	 line[600];

	ck_assert_int_eq(decode_error("[1,2]"), PROTO_E_BAD_REQUEST);
	ck_assert_int_eq(decode_error("null"), PROTO_E_BAD_REQUEST);
	ck_assert_int_eq(decode_error("\"ping\""), PROTO_E_BAD_REQUEST);
	ck_assert_int_eq(decode_error("{}"), PROTO_E_BAD_REQUEST);
	ck_assert_int_eq(decode_error("{\"op\":7}"), PROTO_E_BAD_REQUEST);
	ck_assert_int_eq(decode_error("{\"op\":\"fly\"}"), PROTO_E_UNKNOWN_OP);
	ck_assert_int_eq(decode_error("{\"op\":\"ping\",\"id\":[1]}"),
	    PROTO_E_BAD_REQUEST);
	ck_assert_int_eq(decode_error("{\"op\":\"acquire\"}"),
	    PROTO_E_BAD_REQUEST);
	ck_assert_int_eq(decode_error("{\"op\":\"acquire\",\"name\":5}"),
	    PROTO_E_BAD_REQUEST);
	/* A name with a '/' is a path: valid, but not with a NUL. */
	ck_assert_int_eq(decode_error("{\"op\":\"acquire\",\"name\":\"a/b\"}"),
	    PROTO_OK);
	ck_assert_int_eq(decode_error("{\"op\":\"acquire\",\"name\":\"a/\\u0000b\"}"),
	    PROTO_E_INVALID_NAME);
	ck_assert_int_eq(decode_error("{\"op\":\"acquire\",\"name\":\"a/b\","
	    "\"handoff\":true}"), PROTO_OK);
	ck_assert_int_eq(decode_error("{\"op\":\"acquire\",\"name\":\"ab\","
	    "\"handoff\":true}"), PROTO_E_BAD_REQUEST);
	ck_assert_int_eq(decode_error("{\"op\":\"acquire\",\"name\":\"a/b\","
	    "\"handoff\":1}"), PROTO_E_BAD_REQUEST);
	ck_assert_int_eq(decode_error("{\"op\":\"acquire\",\"name\":\"a\\u0000b\"}"),
	    PROTO_E_INVALID_NAME);
	ck_assert_int_eq(decode_error("{\"op\":\"acquire\",\"name\":\"a\","
	    "\"mode\":\"both\"}"), PROTO_E_BAD_REQUEST);
	ck_assert_int_eq(decode_error("{\"op\":\"acquire\",\"name\":\"a\","
	    "\"timeout\":-1}"), PROTO_E_BAD_REQUEST);
	ck_assert_int_eq(decode_error("{\"op\":\"acquire\",\"name\":\"a\","
	    "\"timeout\":\"5\"}"), PROTO_E_BAD_REQUEST);
	ck_assert_int_eq(decode_error("{\"op\":\"acquire\",\"name\":\"a\","
	    "\"timeout\":1e300}"), PROTO_E_BAD_REQUEST);
	ck_assert_int_eq(decode_error("{\"op\":\"acquire\",\"name\":\"a\","
	    "\"notify_after\":-0.5}"), PROTO_E_BAD_REQUEST);
	ck_assert_int_eq(decode_error("{\"op\":\"acquire\",\"name\":\"a\","
	    "\"owner\":7}"), PROTO_E_BAD_REQUEST);
	ck_assert_int_eq(decode_error("{\"op\":\"release\"}"),
	    PROTO_E_BAD_REQUEST);
	ck_assert_int_eq(decode_error("{\"op\":\"list\",\"name\":\"..\"}"),
	    PROTO_E_INVALID_NAME);
	ck_assert_int_eq(decode_error("{\"op\":\"hello\",\"client\":false}"),
	    PROTO_E_BAD_REQUEST);
	snprintf(line, sizeof line, "{\"op\":\"acquire\",\"name\":\"a\","
	    "\"owner\":\"%0257d\"}", 0);
	ck_assert_int_eq(decode_error(line), PROTO_E_BAD_REQUEST);
	snprintf(line, sizeof line, "{\"op\":\"acquire\",\"name\":\"a\","
	    "\"owner\":\"%0256d\"}", 0);
	ck_assert_int_eq(decode_error(line), PROTO_OK);
}
END_TEST

START_TEST(test_decode_keeps_valid_id_on_error)
{
	struct json_object	*obj;
	struct proto_request	 r;
	const char		*msg;

	ck_assert_int_eq(decode("{\"id\":17,\"op\":\"nope\"}", &obj, &r,
	    &msg), PROTO_E_UNKNOWN_OP);
	ck_assert_int_eq(json_object_get_int(r.id), 17);
	json_object_put(obj);
}
END_TEST

START_TEST(test_request_encode_round_trips)
{
	struct proto_request	 in, out;
	struct json_object	*obj, *parsed;
	struct json_tokener	*tok = proto_tokener_new();
	const char		*text, *msg;
	size_t			 len;

	memset(&in, 0, sizeof in);
	in.op = PROTO_OP_ACQUIRE;
	in.name = "jobs:nightly";
	in.mode = PROTO_SHARED;
	in.timeout = 2.5;
	in.notify_after = 0.25;
	in.owner = "cron";
	obj = proto_request_encode(&in, 9);
	text = proto_serialize(obj, &len);
	ck_assert_ptr_null(memchr(text, '\n', len));
	ck_assert_int_eq(proto_parse_line(tok, text, len, &parsed), 0);
	ck_assert_ptr_nonnull(parsed);
	ck_assert_int_eq(proto_request_decode(parsed, &out, &msg), PROTO_OK);
	ck_assert_int_eq(out.op, PROTO_OP_ACQUIRE);
	ck_assert_str_eq(out.name, "jobs:nightly");
	ck_assert_int_eq(out.mode, PROTO_SHARED);
	ck_assert(out.timeout == 2.5);
	ck_assert(out.notify_after == 0.25);
	ck_assert_str_eq(out.owner, "cron");
	ck_assert_int_eq(json_object_get_int64(out.id), 9);
	json_object_put(parsed);
	json_object_put(obj);
	json_tokener_free(tok);
}
END_TEST

START_TEST(test_error_reply_round_trips)
{
	struct json_object	*reply, *id = json_object_new_string("x");
	const char		*msg;
	int			 e;

	for (e = PROTO_E_BAD_JSON; e < PROTO_E_COUNT; e++) {
		ck_assert_int_eq(proto_error_from_code(proto_error_code(e)), e);
		reply = proto_reply_error(id, e, "why");
		ck_assert(proto_reply_is_final(reply));
		ck_assert_int_eq(proto_reply_error_decode(reply, &msg), e);
		ck_assert_str_eq(msg, "why");
		json_object_put(reply);
	}
	ck_assert_int_eq(proto_error_from_code("nonsense"), PROTO_E_COUNT);
	reply = proto_reply_new(NULL, 1);
	ck_assert_int_eq(proto_reply_error_decode(reply, &msg), PROTO_OK);
	ck_assert_str_eq(proto_serialize(reply, NULL),
	    "{\"id\":null,\"ok\":true}");
	json_object_put(reply);
	reply = proto_event_new(id, "blocking");
	ck_assert(!proto_reply_is_final(reply));
	json_object_put(reply);
	json_object_put(id);
}
END_TEST

START_TEST(test_holder_round_trips)
{
	struct proto_holder	 in, out;
	struct json_object	*obj;

	memset(&in, 0, sizeof in);
	in.pid = 42;
	in.uid = 1000;
	in.gid = 100;
	in.client = "backup";
	in.owner = "nightly";
	in.mode = PROTO_SHARED;
	in.since = 1764253000.5;
	in.token = 1764253000123456LL;
	obj = proto_holder_encode(&in);
	ck_assert_int_eq(proto_holder_decode(obj, &out), 0);
	ck_assert_int_eq(out.pid, 42);
	ck_assert_int_eq(out.uid, 1000);
	ck_assert_int_eq(out.gid, 100);
	ck_assert_str_eq(out.client, "backup");
	ck_assert_str_eq(out.owner, "nightly");
	ck_assert_int_eq(out.mode, PROTO_SHARED);
	ck_assert(out.since == 1764253000.5);
	ck_assert(out.token == 1764253000123456LL);
	ck_assert(!out.external);
	json_object_put(obj);
}
END_TEST

START_TEST(test_waiter_has_no_token)
{
	struct proto_holder	 in;
	struct json_object	*obj, *value;

	memset(&in, 0, sizeof in);
	in.client = in.owner = "";
	obj = proto_holder_encode(&in);
	ck_assert(!json_object_object_get_ex(obj, "token", &value));
	ck_assert(json_object_object_get_ex(obj, "since", &value));
	json_object_put(obj);
}
END_TEST

/* Decode on the fast path only; returns what proto_request_scan returns. */
static int
scan(const char *line, struct proto_request *r, struct proto_scratch *sc)
{
	return proto_request_scan(line, strlen(line), sc, r);
}

/* proto_uint_digits gives v in decimal, zero-padded to width. */
static void
assert_digits(uint64_t v, int width, const char *want)
{
	char	 buf[PROTO_UINT_DIGITS + 4], *end = buf + PROTO_UINT_DIGITS;
	char	*first;

	first = proto_uint_digits(end, v, width);
	ck_assert_int_ge(first - buf, 0);
	*end = '\0';
	ck_assert_str_eq(first, want);
}

START_TEST(test_uint_digits_in_decimal_with_zero_padding)
{
	char	 text[32];
	uint64_t v;
	int	 i;

	assert_digits(0, 1, "0");
	assert_digits(7, 1, "7");
	assert_digits(10, 1, "10");
	assert_digits(99, 1, "99");
	assert_digits(100, 1, "100");
	assert_digits(1234567, 1, "1234567");
	assert_digits(1764265830123456ULL, 1, "1764265830123456");
	assert_digits(UINT64_MAX, 1, "18446744073709551615");
	assert_digits(0, 6, "000000");
	assert_digits(123, 6, "000123");
	assert_digits(999999, 6, "999999");
	assert_digits(1234567, 6, "1234567");
	/* Every length, against printf. */
	for (v = 1, i = 0; i < 20; i++, v = v * 10 + (uint64_t)i % 10) {
		snprintf(text, sizeof text, "%llu", (unsigned long long)v);
		assert_digits(v, 1, text);
	}
}
END_TEST

START_TEST(test_fast_path_decodes_hot_requests)
{
	struct proto_scratch	 sc;
	struct proto_request	 r;
	struct json_object	*id;

	ck_assert_int_eq(scan("{\"id\":12,\"op\":\"acquire\",\"name\":\"db\","
	    "\"mode\":\"shared\",\"timeout\":2.5,\"notify_after\":1e9,"
	    "\"owner\":\"me\"}", &r, &sc), 0);
	ck_assert_int_eq(r.op, PROTO_OP_ACQUIRE);
	ck_assert_str_eq(r.name, "db");
	ck_assert_int_eq(r.mode, PROTO_SHARED);
	ck_assert(r.timeout == 2.5 && r.notify_after == 1e9);
	ck_assert_str_eq(r.owner, "me");
	/* The fast path keeps the id as text; replies rebuild it. */
	ck_assert_ptr_null(r.id);
	ck_assert_int_eq(r.id_len, 2);
	ck_assert(memcmp(r.id_text, "12", 2) == 0);
	id = proto_request_id(&r);
	ck_assert_int_eq(json_object_get_int64(id), 12);
	json_object_put(id);

	ck_assert_int_eq(scan("{ \"op\" : \"release\" , \"name\":\"a\","
	    "\"extra\":[1,{\"x\":2}] }", &r, &sc), -1);
	ck_assert_int_eq(scan("{ \"op\" : \"release\" , \"name\":\"a\","
	    "\"extra\":-3.5e2 } \r", &r, &sc), 0);
	ck_assert_int_eq(r.op, PROTO_OP_RELEASE);
	ck_assert_ptr_null(r.id);
	ck_assert(r.id_len == 4 && memcmp(r.id_text, "null", 4) == 0);
	ck_assert_ptr_null(proto_request_id(&r));

	ck_assert_int_eq(scan("{\"id\":\"a/b\",\"op\":\"list\",\"all\":true,"
	    "\"name\":null}", &r, &sc), 0);
	ck_assert(r.all && r.name == NULL);
	ck_assert(r.id_len == 5 && memcmp(r.id_text, "\"a/b\"", 5) == 0);
	id = proto_request_id(&r);
	ck_assert_str_eq(json_object_get_string(id), "a/b");
	json_object_put(id);

	ck_assert_int_eq(scan("{\"id\":true,\"op\":\"ping\"}", &r, &sc), 0);
	id = proto_request_id(&r);
	ck_assert(json_object_is_type(id, json_type_boolean) &&
	    json_object_get_boolean(id));
	json_object_put(id);
}
END_TEST

START_TEST(test_fast_path_declines_what_json_c_must_judge)
{
	struct proto_scratch	 sc;
	struct proto_request	 r;
	const char		*lines[] = {
		"{\"op\":\"ping\",\"op\":\"ping\"}",	/* duplicate key */
		"{\"op\":\"p\\u0069ng\"}",		/* escape */
		"{\"op\":\"ping\",\"x\":\"\\n\"}",
		"{\"op\":\"ping\",\"x\":1e999}",	/* overflows */
		"{\"op\":\"ping\",\"x\":12345678901234567890}",
		"{\"op\":\"ping\",\"x\":NaN}",
		"{\"op\":\"ping\",\"x\":01}",
		"{\"op\":\"ping\",\"x\":1.}",
		"{\"op\":\"ping\",\"x\":True}",
		"{\"op\":\"ping\"} x",			/* trailing garbage */
		"{\"op\":\"ping\"",			/* truncated */
		" {\"op\":\"ping\"}",			/* leading space */
		"{\"op\":\t\"ping\"}",			/* tab */
		"{\"id\":1.5,\"op\":\"ping\"}",		/* id text may change */
		"{\"id\":-0,\"op\":\"ping\"}",
		"{\"id\":[1],\"op\":\"ping\"}",
		"{\"op\":\"nope\"}",			/* any error */
		"{\"op\":\"acquire\",\"name\":\".x\"}",
		"{\"op\":\"acquire\"}",
		"{\"op\":\"acquire\",\"name\":\"a\",\"timeout\":-1}",
		"{\"op\":\"acquire\",\"name\":\"a\",\"timeout\":1000000001}",
		"{\"op\":\"acquire\",\"name\":\"a\",\"mode\":\"Shared\"}",
		"{\"op\":\"list\",\"all\":1}",
		"{\"op\":\"ping\",\"x\":\"\xc0\xaf\"}",	/* not UTF-8 */
		"{\"op\":\"ping\",\"\xff\":1}",
		"{\"op\":\"ping\",\"x\":\"\xc3\"}",	/* cut short */
		"{\"op\":\"ping\",\"x\":\"\xed\xa0\x80\"}",	/* surrogate */
		"{\"op\":\"list\",\"limit\":0}",
		"{\"op\":\"list\",\"limit\":1.0}",
		"{\"op\":\"list\",\"after\":\"..\"}",
		"{}",
	};
	size_t			 i;

	for (i = 0; i < sizeof lines / sizeof lines[0]; i++) {
		if (scan(lines[i], &r, &sc) != -1)
			ck_abort_msg("fast path took %s", lines[i]);
	}
}
END_TEST

START_TEST(test_request_parse_errors_match_json_c)
{
	struct json_tokener	*tok = proto_tokener_new();
	struct proto_scratch	 sc;
	struct proto_request	 r;
	struct json_object	*obj;
	const char		*msg;
	const char		*line;

	line = "{\"id\":7,\"op\":\"acquire\",\"name\":\".x\"}";
	ck_assert_int_eq(proto_request_parse(tok, line, strlen(line), &sc, &r,
	    &obj, &msg), PROTO_E_INVALID_NAME);
	ck_assert_int_eq(json_object_get_int(r.id), 7);
	ck_assert(r.id_len == 1 && r.id_text[0] == '7');
	json_object_put(obj);

	line = "{\"op\":\"ping\",\"x\":1e999}";
	ck_assert_int_eq(proto_request_parse(tok, line, strlen(line), &sc, &r,
	    &obj, &msg), PROTO_E_BAD_JSON);
	ck_assert_ptr_null(r.id);
	ck_assert_ptr_null(obj);

	line = "{\"id\":\"x\",\"op\":\"ping\",\"op\":\"status\"}";
	ck_assert_int_eq(proto_request_parse(tok, line, strlen(line), &sc, &r,
	    &obj, &msg), PROTO_OK);
	ck_assert_int_eq(r.op, PROTO_OP_STATUS);	/* last wins */
	json_object_put(obj);

	line = "{\"id\":1.50,\"op\":\"ping\"}";
	ck_assert_int_eq(proto_request_parse(tok, line, strlen(line), &sc, &r,
	    &obj, &msg), PROTO_OK);
	ck_assert(r.id_len == 4 && memcmp(r.id_text, "1.50", 4) == 0);
	json_object_put(obj);
	json_tokener_free(tok);
}
END_TEST

START_TEST(test_fast_path_reads_numbers_as_strtod)
{
	const char		*numbers[] = { "0", "-0", "7", "0.5", "0.1",
	    "-0.0", "1e9", "1E9", "1000000000.0", "2.5e+3", "25E-1", "1e-7",
	    "0.30000000000000004", "999999999", "999999999.99999994",
	    "9007199254740993e-10", "4.9e-324", "1e-400", "0.000001e-22",
	    "0.1000000000000000055511151231257827",
	    "12345678901234567890e-11" };
	struct proto_scratch	 sc;
	struct proto_request	 fast, slow;
	struct json_object	*obj;
	const char		*msg, *text;
	char			 line[128];
	size_t			 i;

	for (i = 0; i < NELEMS(numbers); i++) {
		text = numbers[i];
		snprintf(line, sizeof line,
		    "{\"op\":\"acquire\",\"name\":\"a\",\"timeout\":%s}", text);
		ck_assert_msg(scan(line, &fast, &sc) == 0, "declined %s", text);
		ck_assert_int_eq(decode(line, &obj, &slow, &msg), PROTO_OK);
		ck_assert_msg(memcmp(&fast.timeout, &slow.timeout,
		    sizeof fast.timeout) == 0, "%s: %.17g, json-c %.17g", text,
		    fast.timeout, slow.timeout);
		if (strpbrk(text, ".eE") != NULL)
			ck_assert(fast.timeout == strtod(text, NULL));
		json_object_put(obj);
	}
}
END_TEST

/* Decode a request line as the daemon does; the caller puts *ret_obj. */
static enum proto_error
parse_request(struct json_tokener *tok, const char *line, size_t len,
    struct proto_scratch *sc, struct proto_request *r,
    struct json_object **ret_obj)
{
	const char	*msg;

	return proto_request_parse(tok, line, len, sc, r, ret_obj, &msg);
}

static void
assert_same_bits(double a, double b)
{
	ck_assert_msg(memcmp(&a, &b, sizeof a) == 0, "%.17g is not %.17g", a,
	    b);
}

/* What a decoder must make of in: absent fields as their defaults. */
static void
assert_decodes_to(const struct proto_request *out,
    const struct proto_request *in)
{
	ck_assert_int_eq(out->op, in->op);
	ck_assert_pstr_eq(out->name, in->name);
	ck_assert_int_eq(out->all, in->op == PROTO_OP_LIST && in->all);
	ck_assert_int_eq(out->limit, in->op == PROTO_OP_LIST ? in->limit : 0);
	ck_assert_pstr_eq(out->after, in->op == PROTO_OP_LIST ? in->after :
	    NULL);
	ck_assert_str_eq(out->client, in->op == PROTO_OP_HELLO &&
	    in->client != NULL ? in->client : "");
	if (in->op != PROTO_OP_ACQUIRE)
		return;
	ck_assert_int_eq(out->mode, in->mode);
	assert_same_bits(out->timeout, in->timeout < 0 ? -1 : in->timeout);
	assert_same_bits(out->notify_after, in->notify_after);
	ck_assert_str_eq(out->owner, in->owner != NULL ? in->owner : "");
	ck_assert_int_eq(out->notify_contended, in->notify_contended);
	ck_assert_int_eq(out->detect_deadlock, in->detect_deadlock);
}

/*
 * Format a request into line: it must be one line, json-c's to the byte,
 * and valid JSON.  Returns its length without the LF.
 */
static size_t
format_as_json_c(struct json_tokener *tok, const struct proto_request *in,
    int64_t id, char *line, size_t size)
{
	struct json_object	*tree, *parsed;
	const char		*json;
	size_t			 len, json_len;

	len = proto_request_format(line, size, in, id);
	ck_assert(len <= size && len > 0 && line[len - 1] == '\n');
	len--;
	ck_assert_ptr_null(memchr(line, '\n', len));
	tree = proto_request_encode(in, id);
	json = proto_serialize(tree, &json_len);
	ck_assert_msg(len == json_len && memcmp(line, json, len) == 0,
	    "formatted %.*s\nbut json-c %s", (int)len, line, json);
	json_object_put(tree);
	ck_assert_int_eq(proto_parse_line(tok, line, len, &parsed), 0);
	json_object_put(parsed);
	return len;
}

/*
 * Format a request by hand, as json-c would, and decode it (fast path or
 * not) back to the request it was made from, as json-c's own line does.
 */
static void
check_format(struct json_tokener *tok, const struct proto_request *in,
    int64_t id)
{
	struct proto_scratch	 sc_fmt, sc_json;
	struct proto_request	 r_fmt, r_json;
	struct json_object	*tree, *obj_fmt, *obj_json;
	const char		*json;
	char			 line[4096], id_text[32];
	size_t			 len, json_len;

	len = format_as_json_c(tok, in, id, line, sizeof line);
	tree = proto_request_encode(in, id);
	json = proto_serialize(tree, &json_len);

	ck_assert_int_eq(parse_request(tok, line, len, &sc_fmt, &r_fmt,
	    &obj_fmt), PROTO_OK);
	ck_assert_int_eq(parse_request(tok, json, json_len, &sc_json, &r_json,
	    &obj_json), PROTO_OK);
	assert_decodes_to(&r_fmt, in);
	assert_decodes_to(&r_json, in);
	snprintf(id_text, sizeof id_text, "%lld", (long long)id);
	ck_assert_uint_eq(r_fmt.id_len, strlen(id_text));
	ck_assert(memcmp(r_fmt.id_text, id_text, r_fmt.id_len) == 0);
	json_object_put(obj_fmt);
	json_object_put(obj_json);
	json_object_put(tree);
}

static const char *const format_labels[] = { "", "cron", "say \"hi\"",
    "back\\slash", "a/b", "tab\tnew\nline\r\f\b", "\x01\x1f\x7f",
    "caf\xc3\xa9 \xe2\x98\x83", "{\"id\":1}\n" };
static const char *const format_names[] = { "a", "jobs:nightly",
    "Ab9._:@+-z" };
static const double format_seconds[] = { 0, 0.1, 0.25, 0.5, 1, 2.5, 30,
    1e-7, 1e9, 999999999.99999994, 5e-324, 1.5e-10, 123456.789 };
/* Ids are of magnitude below 2^63: INT64_MIN is refused (decode_id). */
static const int64_t format_ids[] = { 1, 0, -1, 42, 9007199254740993LL,
    INT64_MAX, -INT64_MAX };

START_TEST(test_format_matches_json_c_for_plain_requests)
{
	struct json_tokener	*tok = proto_tokener_new();
	struct proto_request	 req;
	size_t			 i, j;

	for (i = 0; i < NELEMS(format_ids); i++) {
		memset(&req, 0, sizeof req);
		req.op = i % 2 ? PROTO_OP_PING : PROTO_OP_STATUS;
		check_format(tok, &req, format_ids[i]);
	}
	memset(&req, 0, sizeof req);
	req.op = PROTO_OP_STATUS;
	req.metrics = 1;
	check_format(tok, &req, 3);
	memset(&req, 0, sizeof req);
	req.op = PROTO_OP_HELLO;
	check_format(tok, &req, 1);
	for (i = 0; i < NELEMS(format_labels); i++) {
		req.client = format_labels[i];
		check_format(tok, &req, 1);
	}
	for (i = 0; i < NELEMS(format_names); i++) {
		memset(&req, 0, sizeof req);
		req.op = PROTO_OP_RELEASE;
		req.name = format_names[i];
		check_format(tok, &req, (int64_t)i);
		req.op = PROTO_OP_LIST;
		for (j = 0; j < 4; j++) {
			req.name = j < 2 ? NULL : format_names[i];
			req.all = j % 2;
			check_format(tok, &req, 5);
		}
	}
	json_tokener_free(tok);
}
END_TEST

START_TEST(test_format_matches_json_c_for_acquire)
{
	struct json_tokener	*tok = proto_tokener_new();
	struct proto_request	 req;
	size_t			 t, n, k = 0;

	memset(&req, 0, sizeof req);
	req.op = PROTO_OP_ACQUIRE;
	/* Each timeout (and none) with each notify_after; the rest cycle. */
	for (t = 0; t <= NELEMS(format_seconds); t++) {
		for (n = 0; n < NELEMS(format_seconds); n++, k++) {
			req.timeout = t < NELEMS(format_seconds) ?
			    format_seconds[t] : -1;
			req.notify_after = format_seconds[n];
			req.name = format_names[k % NELEMS(format_names)];
			req.mode = k % 2 ? PROTO_SHARED : PROTO_EXCLUSIVE;
			req.notify_contended = k % 3 == 0;
			req.deadlock_group = k % 5 == 0 ?
			    format_labels[k % NELEMS(format_labels)] : NULL;
			req.detect_deadlock = k % 5 < 2;
			req.owner = k % 7 == 0 ? NULL :
			    format_labels[k % NELEMS(format_labels)];
			check_format(tok, &req, format_ids[k %
			    NELEMS(format_ids)]);
		}
	}
	json_tokener_free(tok);
}
END_TEST

START_TEST(test_format_escapes_as_json_c)
{
	struct proto_request	 req;
	char			 line[256];
	size_t			 len;
	const char		*want = "{\"id\":3,\"op\":\"hello\",\"client\":"
	    "\"q\\\"b\\\\s/\\u0001\\u001f\\n\\t\x7f\xc3\xa9\"}\n";

	memset(&req, 0, sizeof req);
	req.op = PROTO_OP_HELLO;
	req.client = "q\"b\\s/\x01\x1f\n\t\x7f\xc3\xa9";
	len = proto_request_format(line, sizeof line, &req, 3);
	ck_assert_uint_eq(len, strlen(want));
	ck_assert(memcmp(line, want, len) == 0);
}
END_TEST

/* Odd doubles anywhere in range read back to the same bits through json-c. */
START_TEST(test_format_doubles_read_back_exactly)
{
	struct json_tokener	*tok = proto_tokener_new();
	struct json_object	*obj, *value;
	struct proto_request	 req;
	const double		 edges[] = { -0.0, 1e15 - 1, 1e15, 1e15 + 0.5,
	    1e17, 1e22, 1e300, -1.5, 9007199254740992.0, 0x1p63, -0x1p63,
	    5e-324, 2.2250738585072014e-308 };
	uint64_t		 bits = 0x9e3779b97f4a7c15ULL;
	double			 d;
	char			 line[256];
	size_t			 len;
	int			 i, n = (int)NELEMS(edges);

	memset(&req, 0, sizeof req);
	req.op = PROTO_OP_ACQUIRE;
	req.name = "a";
	req.timeout = -1;
	for (i = 0; i < n + 20000; i++) {
		/* Then random bit patterns: every exponent, denormals too. */
		bits ^= bits << 13;
		bits ^= bits >> 7;
		bits ^= bits << 17;
		if (i < n)
			d = edges[i];
		else
			memcpy(&d, &bits, sizeof d);
		if (!isfinite(d))
			continue;
		req.notify_after = d;
		len = format_as_json_c(tok, &req, 1, line, sizeof line);
		ck_assert_int_eq(proto_parse_line(tok, line, len, &obj), 0);
		ck_assert(json_object_object_get_ex(obj, "notify_after",
		    &value));
		ck_assert(json_object_is_type(value, json_type_double));
		assert_same_bits(json_object_get_double(value), d);
		json_object_put(obj);
	}
	json_tokener_free(tok);
}
END_TEST

START_TEST(test_format_counts_what_does_not_fit)
{
	struct proto_request	 req;
	char			 full[256], part[256];
	size_t			 len, size;

	memset(&req, 0, sizeof req);
	req.op = PROTO_OP_ACQUIRE;
	req.name = "db";
	req.timeout = 2.5;
	req.owner = "\"quoted\"";
	len = proto_request_format(full, sizeof full, &req, 12);
	ck_assert_uint_lt(len, sizeof full);
	ck_assert_uint_eq(proto_request_format(NULL, 0, &req, 12), len);
	for (size = 1; size <= len; size++) {
		memset(part, '#', sizeof part);
		ck_assert_uint_eq(proto_request_format(part, size, &req, 12),
		    len);
		ck_assert(memcmp(part, full, size) == 0);
		ck_assert(part[size] == '#');
	}
}
END_TEST

START_TEST(test_default_socket_follows_environment)
{
	char	 buf[256];

	setenv("LOCKS_SOCKET", "/x/y.sock", 1);
	proto_default_socket(buf, sizeof buf);
	ck_assert_str_eq(buf, "/x/y.sock");
	unsetenv("LOCKS_SOCKET");
	setenv("XDG_RUNTIME_DIR", "/run/user/7", 1);
	proto_default_socket(buf, sizeof buf);
	if (geteuid() == 0)
		ck_assert_str_eq(buf, "/run/locksd/locksd.sock");
	else
		ck_assert_str_eq(buf, "/run/user/7/locksd/locksd.sock");
}
END_TEST

START_TEST(test_system_socket_moves_only_to_an_absolute_path)
{
	ck_assert_int_eq(unsetenv("LOCKS_SYSTEM_SOCKET"), 0);
	ck_assert_str_eq(proto_system_socket(), PROTO_SYSTEM_SOCKET);
	ck_assert_str_eq(PROTO_SYSTEM_SOCKET, "/run/locksd/locksd.sock");
	setenv("LOCKS_SYSTEM_SOCKET", "/t/sys.sock", 1);
	ck_assert_str_eq(proto_system_socket(), "/t/sys.sock");
	setenv("LOCKS_SYSTEM_SOCKET", "relative.sock", 1);
	ck_assert_str_eq(proto_system_socket(), PROTO_SYSTEM_SOCKET);
	setenv("LOCKS_SYSTEM_SOCKET", "", 1);
	ck_assert_str_eq(proto_system_socket(), PROTO_SYSTEM_SOCKET);
	unsetenv("LOCKS_SYSTEM_SOCKET");
}
END_TEST

/* One line as the daemon decodes it, kept alive for the test to read. */
struct both {
	struct proto_scratch	 sc;
	struct proto_request	 r;
	struct json_object	*obj;
	char			 id[PROTO_MAX_ID + 1];	/* r's id text */
};

/*
 * Decode line both ways: as the daemon does (fast path, else json-c), into
 * b, and on the json-c path alone; both must give want, and the daemon's
 * way the message wmsg when it is not NULL.  fast says whether the fast
 * path takes the line.  The id a reply rebuilds must have b->id's text.
 * The caller sets b->obj to NULL first, and puts it last.
 */
static void
expect_both(struct both *b, const char *line, size_t len,
    enum proto_error want, const char *wmsg, int fast)
{
	struct json_tokener	*tok = proto_tokener_new();
	struct proto_request	 slow;
	struct json_object	*tree = NULL, *id;
	const char		*msg = NULL, *text;
	enum proto_error	 error;
	size_t			 n;

	json_object_put(b->obj);
	b->obj = NULL;
	ck_assert_msg((proto_request_scan(line, len, &b->sc, &b->r) == 0) ==
	    fast, "fast path %s %.*s", fast ? "declined" : "took", (int)len,
	    line);
	error = proto_request_parse(tok, line, len, &b->sc, &b->r, &b->obj,
	    &msg);
	ck_assert_msg(error == want, "%.*s: %s (%s), not %s", (int)len, line,
	    proto_error_code(error), error ? msg : "", proto_error_code(want));
	if (wmsg != NULL)
		ck_assert_str_eq(msg, wmsg);
	ck_assert_uint_le(b->r.id_len, PROTO_MAX_ID);
	memcpy(b->id, b->r.id_text, b->r.id_len);
	b->id[b->r.id_len] = '\0';
	id = proto_request_id(&b->r);
	text = proto_id_text(id, &n);
	ck_assert_msg(n == b->r.id_len && memcmp(text, b->id, n) == 0,
	    "id %s comes back as %.*s", b->id, (int)n, text);
	json_object_put(id);
	if (proto_parse_line(tok, line, len, &tree) == -1)
		error = PROTO_E_BAD_JSON;
	else
		error = proto_request_decode(tree, &slow, &msg);
	ck_assert_msg(error == want, "json-c path: %.*s: %s, not %s",
	    (int)len, line, proto_error_code(error), proto_error_code(want));
	if (error == PROTO_OK) {
		ck_assert_uint_eq(slow.id_len, b->r.id_len);
		ck_assert(memcmp(slow.id_text, b->id, slow.id_len) == 0);
	}
	json_object_put(tree);
	json_tokener_free(tok);
}

/* Write pattern with its one "%s" replaced by value (no printf: -Wformat). */
static void
fill(char *line, size_t size, const char *pattern, const char *value)
{
	const char	*hole = strstr(pattern, "%s");

	ck_assert_ptr_nonnull(hole);
	ck_assert_int_lt(snprintf(line, size, "%.*s%s%s", (int)(hole - pattern),
	    pattern, value, hole + 2), (int)size);
}

/* A string literal and its length. */
#define L(text)	text, sizeof text - 1

/* expect_both for a NUL-ended line, with no interest in its id. */
static void
expect_line(const char *line, enum proto_error want, int fast)
{
	struct both	 b;

	b.obj = NULL;
	expect_both(&b, line, strlen(line), want, NULL, fast);
	json_object_put(b.obj);
}

START_TEST(test_utf8_valid_follows_rfc_3629)
{
	const char	*good[] = { "", "plain ascii", "a\0b", "\x7f",
	    "caf\xc3\xa9", "\xc2\x80", "\xdf\xbf", "\xe0\xa0\x80",
	    "\xe2\x82\xac", "\xed\x9f\xbf", "\xee\x80\x80", "\xef\xbf\xbf",
	    "\xf0\x90\x80\x80", "\xf0\x9f\x98\x80", "\xf4\x8f\xbf\xbf",
	    "12345678\xc3\xa9" "12345678" };
	const size_t	 good_len[] = { 0, 11, 3 };
	const char	*bad[] = { "\x80", "\xbf", "\xc0\xaf", "\xc1\xbf",
	    "\xff\xfe", "\xfe", "\xf5\x80\x80\x80", "\xc3", "\xc3\x28",
	    "\xe0\x80\xaf", "\xe0\x9f\xbf", "\xed\xa0\x80", "\xed\xbf\xbf",
	    "\xf0\x8f\xbf\xbf", "\xf4\x90\x80\x80", "\xe2\x82",
	    "\xf0\x9f\x98", "12345678abcdefg\xc3", "abcdefgh12345678\xff" };
	size_t		 i, len;

	for (i = 0; i < NELEMS(good); i++) {
		len = i < NELEMS(good_len) ? good_len[i] : strlen(good[i]);
		ck_assert_msg(proto_utf8_valid(good[i], len),
		    "refused good[%zu]", i);
	}
	for (i = 0; i < NELEMS(bad); i++)
		ck_assert_msg(!proto_utf8_valid(bad[i], strlen(bad[i])),
		    "accepted bad[%zu]", i);
}
END_TEST

/* Bad UTF-8, raw or as a lone surrogate escape, is bad_json anywhere. */
START_TEST(test_requests_refuse_invalid_utf8)
{
	static const char *const bad[] = { "\xc0\xaf", "\xff\xfe",
	    "\xe0\x80\xaf", "\xed\xa0\x80", "\xf4\x90\x80\x80", "a\xc3",
	    "\\ud800", "\\udc00", "\\ud800x", "\\ud800\\u0041",
	    "\\ud800\\ud800", "x\\udfff" };
	static const char *const fmt[] = {
	    "{\"op\":\"hello\",\"client\":\"%s\"}",
	    "{\"op\":\"acquire\",\"name\":\"a\",\"owner\":\"%s\"}",
	    "{\"id\":\"%s\",\"op\":\"ping\"}",
	    "{\"op\":\"ping\",\"x\":[\"%s\"]}",
	    "{\"op\":\"ping\",\"%s\":1}" };
	struct both		 b;
	char			 line[128];
	size_t			 i, j;

	b.obj = NULL;
	for (i = 0; i < NELEMS(bad); i++) {
		for (j = 0; j < NELEMS(fmt); j++) {
			fill(line, sizeof line, fmt[j], bad[i]);
			expect_both(&b, line, strlen(line),
			    PROTO_E_BAD_JSON, NULL, 0);
			ck_assert_ptr_null(b.r.id);
			ck_assert_str_eq(b.id, "null");
			ck_assert(!parses(line, strlen(line)));
		}
	}
	expect_both(&b, L("{\"id\":1,\"op\":\"hello\",\"client\":"
	    "\"\xc0\xaf\"}"), PROTO_E_BAD_JSON, "line is not valid UTF-8 "
	    "(or escapes a lone surrogate)", 0);
	/* A bare value too: replies go through proto_parse_line. */
	ck_assert(!parses("\"\xff\"", 3));
	ck_assert(!parses("\"\\udead\"", 8));
	json_object_put(b.obj);
}
END_TEST

/* Valid UTF-8 passes, raw on the fast path and escaped on json-c's. */
START_TEST(test_requests_take_valid_utf8)
{
	static const char *const good[] = { "caf\xc3\xa9", "\xe2\x98\x83",
	    "\xf0\x9f\x98\x80 x", "\xef\xbf\xbf~", "\xf4\x8f\xbf\xbf" };
	static const char *const escaped[] = { "\\ud83d\\ude00",
	    "\\u00e9\\uffff", "\\\\ud800", "\\ud800\\udc00\\udbff\\udfff" };
	struct both		 b;
	char			 line[128];
	size_t			 i;

	b.obj = NULL;
	for (i = 0; i < NELEMS(good); i++) {
		snprintf(line, sizeof line, "{\"id\":\"%s\",\"op\":\"acquire\","
		    "\"name\":\"a\",\"owner\":\"%s\"}", good[i], good[i]);
		expect_both(&b, line, strlen(line), PROTO_OK, NULL, 1);
		ck_assert_str_eq(b.r.owner, good[i]);
		ck_assert(strncmp(b.id + 1, good[i], strlen(good[i])) == 0);
		snprintf(line, sizeof line, "{\"op\":\"hello\",\"client\":"
		    "\"%s\"}", good[i]);
		expect_both(&b, line, strlen(line), PROTO_OK, NULL, 1);
		ck_assert_str_eq(b.r.client, good[i]);
	}
	for (i = 0; i < NELEMS(escaped); i++) {
		snprintf(line, sizeof line, "{\"op\":\"hello\",\"client\":"
		    "\"%s\"}", escaped[i]);
		expect_line(line, PROTO_OK, 0);
	}
	json_object_put(b.obj);
}
END_TEST

/* An id is at most PROTO_MAX_ID bytes of JSON, on either path. */
START_TEST(test_id_longer_than_cap_is_bad_request)
{
	struct both		 b;
	char			 line[PROTO_MAX_ID + 128];
	char			 want[PROTO_MAX_ID + 1];
	int			 n;

	b.obj = NULL;
	/* "x...x" of 1024 bytes, quotes included, is the longest. */
	n = snprintf(want, sizeof want, "\"%0*d\"", PROTO_MAX_ID - 2, 0);
	ck_assert_int_eq(n, PROTO_MAX_ID);
	snprintf(line, sizeof line, "{\"id\":%s,\"op\":\"ping\"}", want);
	expect_both(&b, line, strlen(line), PROTO_OK, NULL, 1);
	ck_assert_str_eq(b.id, want);
	/* The json-c path (a tab sends it there) counts the same. */
	snprintf(line, sizeof line, "{\"id\":%s,\t\"op\":\"ping\"}", want);
	expect_both(&b, line, strlen(line), PROTO_OK, NULL, 0);
	ck_assert_str_eq(b.id, want);

	snprintf(line, sizeof line, "{\"id\":\"%0*d\",\"op\":\"ping\"}",
	    PROTO_MAX_ID - 1, 0);
	expect_both(&b, line, strlen(line), PROTO_E_BAD_REQUEST,
	    "id longer than 1024 bytes", 0);
	ck_assert_ptr_null(b.r.id);
	ck_assert_str_eq(b.id, "null");
	snprintf(line, sizeof line, "{\"id\":\"%0*d\",\t\"op\":\"acquire\","
	    "\"name\":\"a\"}", PROTO_MAX_ID - 1, 0);
	expect_both(&b, line, strlen(line), PROTO_E_BAD_REQUEST,
	    "id longer than 1024 bytes", 0);
	/* A number too; a string counts as json-c writes it back. */
	snprintf(line, sizeof line, "{\"id\":1%0*d,\"op\":\"ping\"}",
	    PROTO_MAX_ID, 0);
	expect_both(&b, line, strlen(line), PROTO_E_BAD_REQUEST, NULL, 0);
	snprintf(line, sizeof line, "{\"id\":\"\\u0041%0*d\",\"op\":\"ping\"}",
	    PROTO_MAX_ID - 3, 0);
	expect_both(&b, line, strlen(line), PROTO_OK, NULL, 0);
	ck_assert_uint_eq(strlen(b.id), PROTO_MAX_ID);
	json_object_put(b.obj);
}
END_TEST

/*
 * Every id taken comes back as it was written: its text in the request,
 * and the object a reply or event rebuilds from it, serialised.  Integers
 * json-c cannot keep (magnitude 2^63 and up) are bad_request.
 */
START_TEST(test_ids_come_back_exactly_or_are_refused)
{
	static const char *const good[] = { "0", "7", "-7", "123456789012345",
	    "1234567890123456", "9007199254740993", "9223372036854775807",
	    "-9223372036854775807", "\"\"", "\"abc\"", "\"a/b\"",
	    "\"caf\xc3\xa9\"", "true", "false", "null", "1.5", "1.50",
	    "1e38", "-0.0", "1E2", "1e-400" };
	static const char *const bad[] = { "-9223372036854775808",
	    "-9223372036854775809", "9223372036854775808",
	    "18446744073709551615", "18446744073709551616",
	    "100000000000000000000000000000000000000",
	    "-100000000000000000000000000000000000000" };
	static const char *const fmt[] = { "{\"id\":%s,\"op\":\"ping\"}",
	    "{\"id\":%s,\"op\":\"acquire\",\"name\":\"a\",\"x\":[1]}",
	    "{\"id\":%s,\"op\":\"nope\"}" };
	static const enum proto_error want[] = { PROTO_OK, PROTO_OK,
	    PROTO_E_UNKNOWN_OP };
	struct both		 b;
	struct json_object	*back;
	const char		*text;
	char			 line[256];
	size_t			 i, j, len;
	int			 fast, number;

	b.obj = NULL;
	for (i = 0; i < NELEMS(good); i++) {
		for (j = 0; j < NELEMS(fmt); j++) {
			fill(line, sizeof line, fmt[j], good[i]);
			/* The fast path leaves long or odd numbers alone. */
			number = strchr("-0123456789", good[i][0]) != NULL;
			fast = j == 0 && (!number || (strlen(good[i]) <= 15 &&
			    strpbrk(good[i], ".eE") == NULL));
			expect_both(&b, line, strlen(line), want[j], NULL,
			    fast);
			ck_assert_str_eq(b.id, good[i]);
			back = proto_request_id(&b.r);
			text = proto_id_text(back, &len);
			ck_assert_msg(len == strlen(good[i]) &&
			    memcmp(text, good[i], len) == 0,
			    "id %s comes back as %.*s", good[i], (int)len,
			    text);
			json_object_put(back);
			/* As an acquire keeps it, for its grant and events. */
			back = proto_id_parse(b.id, strlen(b.id));
			text = proto_id_text(back, &len);
			ck_assert(len == strlen(good[i]) &&
			    memcmp(text, good[i], len) == 0);
			json_object_put(back);
		}
	}
	for (i = 0; i < NELEMS(bad); i++) {
		for (j = 0; j < NELEMS(fmt); j++) {
			fill(line, sizeof line, fmt[j], bad[i]);
			expect_both(&b, line, strlen(line), PROTO_E_BAD_REQUEST,
			    "integer id out of range: it must lie within "
			    "+-9223372036854775807", 0);
			ck_assert_ptr_null(b.r.id);
			ck_assert_str_eq(b.id, "null");
		}
	}
	json_object_put(b.obj);
}
END_TEST

/* acquire's detect_deadlock, on both paths, with what each refuses. */
START_TEST(test_detect_deadlock_decodes)
{
	static const char *const bad_request[] = {
	    "\"name\":\"db\",\"detect_deadlock\":1",
	    "\"name\":\"db\",\"detect_deadlock\":\"true\"",
	    "\"name\":\"db\",\"detect_deadlock\":{}",
	    "\"name\":\"/tmp/x\",\"handoff\":true,\"detect_deadlock\":true" };
	struct both		 b;
	char			 line[256];
	size_t			 i;

	b.obj = NULL;
	expect_both(&b, L("{\"op\":\"acquire\",\"name\":\"db\"}"), PROTO_OK,
	    NULL, 1);
	ck_assert_int_eq(b.r.detect_deadlock, 0);
	expect_both(&b, L("{\"id\":1,\"op\":\"acquire\",\"name\":\"db\","
	    "\"detect_deadlock\":true}"), PROTO_OK, NULL, 1);
	ck_assert_int_eq(b.r.detect_deadlock, 1);
	expect_both(&b, L("{\"op\":\"acquire\",\"detect_deadlock\":true,"
	    "\"name\":\"db\",\"notify_contended\":true}"), PROTO_OK, NULL, 1);
	ck_assert_int_eq(b.r.detect_deadlock, 1);
	ck_assert_int_eq(b.r.notify_contended, 1);
	expect_both(&b, L("{\"op\":\"acquire\",\"name\":\"db\","
	    "\"detect_deadlock\":false}"), PROTO_OK, NULL, 1);
	ck_assert_int_eq(b.r.detect_deadlock, 0);
	expect_both(&b, L("{\"op\":\"acquire\",\"name\":\"db\","
	    "\"detect_deadlock\":null}"), PROTO_OK, NULL, 1);
	ck_assert_int_eq(b.r.detect_deadlock, 0);
	expect_both(&b, L("{\"op\":\"acquire\",\"name\":\"/tmp/x\","
	    "\"detect_deadlock\":true}"), PROTO_OK, NULL, 1);
	ck_assert_int_eq(b.r.detect_deadlock, 1);
	ck_assert_str_eq(b.r.deadlock_group, "");
	expect_both(&b, L("{\"op\":\"acquire\",\"name\":\"db\","
	    "\"deadlock_group\":\"thread:42\",\"detect_deadlock\":true}"),
	    PROTO_OK, NULL, 1);
	ck_assert_str_eq(b.r.deadlock_group, "thread:42");
	expect_both(&b, L("{\"op\":\"acquire\",\"name\":\"db\","
	    "\"deadlock_group\":7}"), PROTO_E_BAD_REQUEST,
	    "deadlock_group must be a string of at most 256 bytes without NUL",
	    0);
	expect_both(&b, L("{\"op\":\"acquire\",\"name\":\"db\","
	    "\"detect_deadlock\":7}"), PROTO_E_BAD_REQUEST,
	    "detect_deadlock must be a boolean", 0);
	for (i = 0; i < NELEMS(bad_request); i++) {
		snprintf(line, sizeof line, "{\"op\":\"acquire\",%s}",
		    bad_request[i]);
		expect_line(line, PROTO_E_BAD_REQUEST, 0);
	}
	json_object_put(b.obj);
}
END_TEST

/* acquire's notify_contended, on both paths, with what each refuses. */
START_TEST(test_notify_contended_decodes)
{
	static const char *const bad_request[] = {
	    "\"name\":\"db\",\"notify_contended\":1",
	    "\"name\":\"db\",\"notify_contended\":\"true\"",
	    "\"name\":\"db\",\"notify_contended\":[true]",
	    "\"name\":\"/tmp/x\",\"handoff\":true,\"notify_contended\":true" };
	struct both		 b;
	char			 line[256];
	size_t			 i;

	b.obj = NULL;
	expect_both(&b, L("{\"op\":\"acquire\",\"name\":\"db\"}"), PROTO_OK,
	    NULL, 1);
	ck_assert_int_eq(b.r.notify_contended, 0);
	expect_both(&b, L("{\"id\":1,\"op\":\"acquire\",\"name\":\"db\","
	    "\"notify_contended\":true}"), PROTO_OK, NULL, 1);
	ck_assert_int_eq(b.r.notify_contended, 1);
	expect_both(&b, L("{\"op\":\"acquire\",\"name\":\"db\","
	    "\"notify_contended\":false}"), PROTO_OK, NULL, 1);
	ck_assert_int_eq(b.r.notify_contended, 0);
	expect_both(&b, L("{\"op\":\"acquire\",\"name\":\"db\","
	    "\"notify_contended\":null}"), PROTO_OK, NULL, 1);
	ck_assert_int_eq(b.r.notify_contended, 0);
	expect_both(&b, L("{\"op\":\"acquire\",\"name\":\"/tmp/x\","
	    "\"notify_contended\":true}"), PROTO_OK, NULL, 1);
	ck_assert_int_eq(b.r.notify_contended, 1);
	expect_both(&b, L("{\"op\":\"acquire\",\"name\":\"db\","
	    "\"notify_contended\":7}"), PROTO_E_BAD_REQUEST,
	    "notify_contended must be a boolean", 0);
	for (i = 0; i < NELEMS(bad_request); i++) {
		snprintf(line, sizeof line, "{\"op\":\"acquire\",%s}",
		    bad_request[i]);
		expect_line(line, PROTO_E_BAD_REQUEST, 0);
	}
	json_object_put(b.obj);
}
END_TEST

/*
 * convert on both paths: its mode is required, its timeout optional;
 * and the formatter writes it as json-c does.
 */
START_TEST(test_convert_decodes_on_both_paths_and_formats)
{
	struct json_tokener	*tok = proto_tokener_new();
	struct proto_request	 req;
	struct both		 b;
	size_t			 t;

	b.obj = NULL;
	expect_both(&b, L("{\"id\":1,\"op\":\"convert\",\"name\":\"db\","
	    "\"mode\":\"exclusive\",\"timeout\":2.5}"), PROTO_OK, NULL, 1);
	ck_assert_int_eq(b.r.op, PROTO_OP_CONVERT);
	ck_assert_int_eq(b.r.mode, PROTO_EXCLUSIVE);
	ck_assert_double_eq(b.r.timeout, 2.5);
	expect_both(&b, L("{\"op\":\"convert\",\"name\":\"/tmp/x\","
	    "\"mode\":\"shared\"}"), PROTO_OK, NULL, 1);
	ck_assert_int_eq(b.r.mode, PROTO_SHARED);
	ck_assert_double_eq(b.r.timeout, -1);
	expect_both(&b, L("{\"op\":\"convert\",\"name\":\"db\"}"),
	    PROTO_E_BAD_REQUEST, "mode must be \"exclusive\" or \"shared\"",
	    0);
	expect_both(&b, L("{\"op\":\"convert\",\"name\":\"db\","
	    "\"mode\":null}"), PROTO_E_BAD_REQUEST,
	    "mode must be \"exclusive\" or \"shared\"", 0);
	expect_both(&b, L("{\"op\":\"convert\",\"mode\":\"shared\"}"),
	    PROTO_E_BAD_REQUEST, NULL, 0);
	expect_both(&b, L("{\"op\":\"convert\",\"name\":\"db\","
	    "\"mode\":\"shared\",\"timeout\":-1}"), PROTO_E_BAD_REQUEST,
	    NULL, 0);
	json_object_put(b.obj);

	memset(&req, 0, sizeof req);
	req.op = PROTO_OP_CONVERT;
	for (t = 0; t <= NELEMS(format_seconds); t++) {
		req.timeout = t < NELEMS(format_seconds) ?
		    format_seconds[t] : -1;
		req.name = format_names[t % NELEMS(format_names)];
		req.mode = t % 2 ? PROTO_SHARED : PROTO_EXCLUSIVE;
		check_format(tok, &req, format_ids[t % NELEMS(format_ids)]);
	}
	json_tokener_free(tok);
}
END_TEST

/* list's limit and after, on both paths, with what each refuses. */
START_TEST(test_list_paging_fields_decode)
{
	static const char *const bad_request[] = { "\"limit\":0",
	    "\"limit\":1001", "\"limit\":-1", "\"limit\":1.5",
	    "\"limit\":10.0", "\"limit\":1e2", "\"limit\":\"5\"",
	    "\"limit\":true", "\"limit\":[5]", "\"limit\":-0",
	    "\"limit\":99999999999999999999", "\"after\":5",
	    "\"after\":true", "\"after\":[\"a\"]" };
	static const char *const invalid_name[] = { "\"after\":\"\"",
	    "\"after\":\"..\"", "\"after\":\".x\"", "\"after\":\"a/\\u0000\"",
	    "\"after\":\"caf\xc3\xa9\"" };
	struct both		 b;
	char			 line[256];
	size_t			 i;

	b.obj = NULL;
	expect_both(&b, L("{\"op\":\"list\"}"), PROTO_OK, NULL, 1);
	ck_assert_int_eq(b.r.limit, 0);
	ck_assert_ptr_null(b.r.after);
	expect_both(&b, L("{\"op\":\"list\",\"limit\":1,\"after\":\"db\"}"),
	    PROTO_OK, NULL, 1);
	ck_assert_int_eq(b.r.limit, 1);
	ck_assert_str_eq(b.r.after, "db");
	/* A path lock is listed under its path, so after may be one. */
	expect_both(&b, L("{\"op\":\"list\",\"after\":\"/tmp/x\"}"),
	    PROTO_OK, NULL, 0);
	ck_assert_str_eq(b.r.after, "/tmp/x");
	expect_both(&b, L("{\"op\":\"list\",\"limit\":1000,\t"
	    "\"after\":\"a:b@c\",\"name\":\"x\"}"), PROTO_OK, NULL, 0);
	ck_assert_int_eq(b.r.limit, 1000);
	ck_assert_str_eq(b.r.after, "a:b@c");
	ck_assert_str_eq(b.r.name, "x");
	expect_both(&b, L("{\"op\":\"list\",\"limit\":null,\"after\":null}"),
	    PROTO_OK, NULL, 1);
	ck_assert_int_eq(b.r.limit, 0);
	ck_assert_ptr_null(b.r.after);
	/* Other ops ignore them. */
	expect_both(&b, L("{\"op\":\"ping\",\"limit\":0,\"after\":\"..\"}"),
	    PROTO_OK, NULL, 1);
	ck_assert_int_eq(b.r.limit, 0);
	ck_assert_ptr_null(b.r.after);
	for (i = 0; i < NELEMS(bad_request); i++) {
		snprintf(line, sizeof line, "{\"op\":\"list\",%s}",
		    bad_request[i]);
		expect_line(line, PROTO_E_BAD_REQUEST, 0);
	}
	for (i = 0; i < NELEMS(invalid_name); i++) {
		snprintf(line, sizeof line, "{\"op\":\"list\",%s}",
		    invalid_name[i]);
		expect_line(line, PROTO_E_INVALID_NAME, 0);
	}
	json_object_put(b.obj);
}
END_TEST

/* liblocks writes limit and after when set, as json-c would. */
START_TEST(test_format_writes_list_paging_fields)
{
	struct json_tokener	*tok = proto_tokener_new();
	struct proto_request	 req;
	char			 line[256];
	size_t			 len, i;
	const int		 limits[] = { 0, 1, 50, 1000 };
	const char		*want = "{\"id\":9,\"op\":\"list\","
	    "\"name\":\"x\",\"all\":true,\"limit\":50,\"after\":\"db\"}\n";

	memset(&req, 0, sizeof req);
	req.op = PROTO_OP_LIST;
	for (i = 0; i < 2 * NELEMS(limits); i++) {
		req.limit = limits[i / 2];
		req.after = i % 2 ? format_names[i % NELEMS(format_names)] :
		    NULL;
		req.all = i % 3 == 0;
		check_format(tok, &req, 5);
	}
	req.name = "x";
	req.all = 1;
	req.limit = 50;
	req.after = "db";
	len = proto_request_format(line, sizeof line, &req, 9);
	ck_assert_uint_eq(len, strlen(want));
	ck_assert(memcmp(line, want, len) == 0);
	/* Only list has them. */
	req.op = PROTO_OP_RELEASE;
	len = proto_request_format(line, sizeof line, &req, 9);
	ck_assert(memmem(line, len, "limit", 5) == NULL);
	ck_assert(memmem(line, len, "after", 5) == NULL);
	json_tokener_free(tok);
}
END_TEST

/* A literal request formatted by hand, to the byte. */
START_TEST(test_format_writes_an_acquire_to_the_byte)
{
	struct proto_request	 req;
	char			 line[256];
	const char		*want = "{\"id\":5,\"op\":\"acquire\","
	    "\"name\":\"jobs\",\"mode\":\"shared\",\"timeout\":2.5,"
	    "\"notify_after\":0.0,\"owner\":\"cron \\\"x\\\"\"}\n";
	size_t			 len;

	memset(&req, 0, sizeof req);
	req.op = PROTO_OP_ACQUIRE;
	req.name = "jobs";
	req.mode = PROTO_SHARED;
	req.timeout = 2.5;
	req.owner = "cron \"x\"";
	len = proto_request_format(line, sizeof line, &req, 5);
	ck_assert_uint_eq(len, strlen(want));
	ck_assert(memcmp(line, want, len) == 0);

	memset(&req, 0, sizeof req);
	req.op = PROTO_OP_PING;
	len = proto_request_format(line, sizeof line, &req, -7);
	ck_assert_uint_eq(len, strlen("{\"id\":-7,\"op\":\"ping\"}\n"));
	ck_assert(memcmp(line, "{\"id\":-7,\"op\":\"ping\"}\n", len) == 0);
}
END_TEST

/*
 * The bytes a reply line from format.c puts on the wire, as locksd sends
 * them: a long id goes in at PROTO_REPLY_ID_AT.  NUL-ended in out.
 */
static void
reply_wire(const char *line, size_t len, const char *id_text, size_t id_len,
    char *out, size_t size)
{
	size_t	 at = id_len > PROTO_REPLY_ID_INLINE ? PROTO_REPLY_ID_AT : len;

	ck_assert_uint_gt(len, 0);
	ck_assert_uint_le(len, PROTO_REPLY_MAX);
	ck_assert_uint_lt(len + id_len, size);
	memcpy(out, line, at);
	if (at < len) {
		memcpy(out + at, id_text, id_len);
		memcpy(out + at + id_len, line + at, len - at);
		len += id_len;
	}
	out[len] = '\0';
}

/* The reply json-c makes for id_text with ok true, and LF; in out. */
static void
json_c_ok(const char *id_text, char *out, size_t size)
{
	struct json_object	*id, *reply;
	const char		*json;
	size_t			 len;

	id = proto_id_parse(id_text, strlen(id_text));
	reply = proto_reply_new(id, 1);
	json = proto_serialize(reply, &len);
	ck_assert_uint_lt(len + 1, size);
	memcpy(out, json, len);
	memcpy(out + len, "\n", 2);
	json_object_put(reply);
	json_object_put(id);
}

/* An id of n bytes of JSON text: a string of n - 2 letters. */
static void
make_string_id(char *buf, size_t n)
{
	memset(buf, 'x', n);
	buf[0] = buf[n - 1] = '"';
	buf[n] = '\0';
}

START_TEST(test_ok_line_is_json_c_to_the_byte)
{
	const char	*ids[] = { "1", "-42", "\"a/b\"", "true", "null",
	    "9223372036854775807" };
	char		 line[PROTO_REPLY_MAX], wire[2048], want[2048];
	char		 id[PROTO_MAX_ID + 1];
	size_t		 i, len, n;
	const size_t	 lens[] = { 2, PROTO_REPLY_ID_INLINE,
	    PROTO_REPLY_ID_INLINE + 1, PROTO_MAX_ID };

	len = proto_format_ok(line, sizeof line, "7", 1);
	reply_wire(line, len, "7", 1, wire, sizeof wire);
	ck_assert_str_eq(wire, "{\"id\":7,\"ok\":true}\n");
	for (i = 0; i < NELEMS(ids); i++) {
		len = proto_format_ok(line, sizeof line, ids[i],
		    strlen(ids[i]));
		reply_wire(line, len, ids[i], strlen(ids[i]), wire,
		    sizeof wire);
		json_c_ok(ids[i], want, sizeof want);
		ck_assert_str_eq(wire, want);
	}
	/* Up to PROTO_REPLY_ID_INLINE the id is in the line, past it not. */
	for (i = 0; i < NELEMS(lens); i++) {
		n = lens[i];
		make_string_id(id, n);
		len = proto_format_ok(line, sizeof line, id, n);
		ck_assert_uint_eq(len, n <= PROTO_REPLY_ID_INLINE ?
		    strlen("{\"id\":,\"ok\":true}\n") + n :
		    strlen("{\"id\":,\"ok\":true}\n"));
		reply_wire(line, len, id, n, wire, sizeof wire);
		json_c_ok(id, want, sizeof want);
		ck_assert_str_eq(wire, want);
	}
	ck_assert_uint_eq(proto_format_ok(line, PROTO_REPLY_MAX - 1, "1", 1),
	    0);
}
END_TEST

START_TEST(test_grant_line_is_exact_and_decodes)
{
	struct json_tokener	*tok = proto_tokener_new();
	struct json_object	*obj, *value;
	char			 line[PROTO_REPLY_MAX], wire[2048];
	char			 name[PROTO_MAX_NAME + 2], id[PROTO_MAX_ID + 1];
	size_t			 len;

	len = proto_format_grant(line, sizeof line, "12", 2, "jobs:nightly",
	    PROTO_EXCLUSIVE, 7, 1234567);
	reply_wire(line, len, "12", 2, wire, sizeof wire);
	ck_assert_str_eq(wire, "{\"id\":12,\"ok\":true,\"name\":"
	    "\"jobs:nightly\",\"mode\":\"exclusive\",\"token\":7,"
	    "\"waited\":1.234567}\n");

	len = proto_format_grant(line, sizeof line, "\"a\"", 3, "db",
	    PROTO_SHARED, 1700000000000000001ULL, 5);
	reply_wire(line, len, "\"a\"", 3, wire, sizeof wire);
	ck_assert_str_eq(wire, "{\"id\":\"a\",\"ok\":true,\"name\":\"db\","
	    "\"mode\":\"shared\",\"token\":1700000000000000001,"
	    "\"waited\":0.000005}\n");

	/* The longest line: a long id, the longest name, big numbers. */
	make_string_id(id, PROTO_REPLY_ID_INLINE + 1);
	memset(name, 'n', PROTO_MAX_NAME);
	name[PROTO_MAX_NAME] = '\0';
	len = proto_format_grant(line, sizeof line, id, strlen(id), name,
	    PROTO_EXCLUSIVE, INT64_MAX, UINT64_MAX);
	ck_assert_ptr_null(memmem(line, len, id, strlen(id)));
	reply_wire(line, len, id, strlen(id), wire, sizeof wire);
	ck_assert_int_eq(proto_parse_line(tok, wire, strlen(wire) - 1, &obj),
	    0);
	ck_assert(json_object_object_get_ex(obj, "id", &value));
	ck_assert_uint_eq(strlen(json_object_get_string(value)),
	    PROTO_REPLY_ID_INLINE - 1);
	ck_assert(json_object_object_get_ex(obj, "name", &value));
	ck_assert_str_eq(json_object_get_string(value), name);
	ck_assert(json_object_object_get_ex(obj, "token", &value));
	ck_assert_int_eq(json_object_get_int64(value), INT64_MAX);
	ck_assert_ptr_nonnull(strstr(wire, ",\"waited\":18446744073709."
	    "551615}\n"));
	json_object_put(obj);

	/* What cannot fit is not written. */
	name[PROTO_MAX_NAME] = 'n';
	name[PROTO_MAX_NAME + 1] = '\0';
	ck_assert_uint_eq(proto_format_grant(line, sizeof line, "1", 1, name,
	    PROTO_SHARED, 1, 0), 0);
	ck_assert_uint_eq(proto_format_grant(line, PROTO_REPLY_MAX - 1, "1",
	    1, "a", PROTO_SHARED, 1, 0), 0);
	json_tokener_free(tok);
}
END_TEST

/* Numbers of every length, at each power of ten and just under it. */
START_TEST(test_grant_line_writes_numbers_of_every_length)
{
	char		 line[PROTO_REPLY_MAX], want[PROTO_REPLY_MAX];
	uint64_t	 power = 1, v;
	size_t		 len;
	int		 k, below;

	for (k = 0; k < PROTO_UINT_DIGITS; k++, power *= 10) {
		for (below = 0; below < 2; below++) {
			v = power - (uint64_t)below;
			len = proto_format_grant(line, sizeof line, "1", 1,
			    "n", PROTO_SHARED, v, v);
			snprintf(want, sizeof want, "{\"id\":1,\"ok\":true,"
			    "\"name\":\"n\",\"mode\":\"shared\",\"token\":%llu,"
			    "\"waited\":%llu.%06llu}\n", (unsigned long long)v,
			    (unsigned long long)(v / 1000000),
			    (unsigned long long)(v % 1000000));
			ck_assert_uint_eq(len, strlen(want));
			ck_assert(memcmp(line, want, len) == 0);
		}
	}
	len = proto_format_grant(line, sizeof line, "1", 1, "n",
	    PROTO_SHARED, UINT64_MAX, 0);
	ck_assert_ptr_nonnull(memmem(line, len,
	    ",\"token\":18446744073709551615,\"waited\":0.000000}\n", 49));
}
END_TEST

/*
 * scan.c finds ops and keys by their first byte, in tables apart from
 * PROTO_OPS and PROTO_FIELDS: each op and field of the lists must be
 * there, or the fast path would quietly leave it to json-c (an op) or
 * skip it (a field).  A known key given twice is declined, as json-c
 * must judge it; an unknown one is skipped, so a line with it twice is
 * taken.  ("op" twice is declined either way: the op walk covers it.)
 */
START_TEST(test_fast_path_knows_every_op_and_field)
{
#define OP_CASE(op, text)	{ PROTO_OP_##op, text },
#define FIELD_TEXT(field, text)	text,
	static const struct {
		enum proto_op	 op;
		const char	*text;
	} ops[] = { PROTO_OPS(OP_CASE) };
	static const char *const fields[] = { PROTO_FIELDS(FIELD_TEXT) };
	struct proto_scratch	 sc;
	struct proto_request	 r;
	char			 line[256];
	size_t			 i;

	for (i = 0; i < NELEMS(ops); i++) {
		/* A convert needs its mode; the others skip it. */
		snprintf(line, sizeof line, "{\"id\":1,\"op\":\"%s\","
		    "\"name\":\"x\",\"mode\":\"shared\"}", ops[i].text);
		ck_assert_msg(scan(line, &r, &sc) == 0,
		    "the fast path does not know op \"%s\"", ops[i].text);
		ck_assert_int_eq(r.op, ops[i].op);
	}
	ck_assert_int_eq(scan("{\"op\":\"ping\",\"zz\":1,\"zz\":1}", &r, &sc),
	    0);
	for (i = 0; i < NELEMS(fields); i++) {
		snprintf(line, sizeof line, "{\"op\":\"ping\",\"%s\":1,"
		    "\"%s\":1}", fields[i], fields[i]);
		ck_assert_msg(scan(line, &r, &sc) == -1,
		    "the fast path skips field \"%s\"", fields[i]);
	}
#undef OP_CASE
#undef FIELD_TEXT
}
END_TEST

START_TEST(test_status_metrics_flag_decodes_on_both_paths)
{
	static const struct {
		const char	*line;
		int		 metrics;
	} cases[] = {
		{ "{\"id\":1,\"op\":\"status\"}", 0 },
		{ "{\"id\":1,\"op\":\"status\",\"metrics\":true}", 1 },
		{ "{\"id\":1,\"op\":\"status\",\"metrics\":false}", 0 },
		{ "{\"metrics\":true,\"op\":\"status\"}", 1 },
	};
	struct proto_request	 r;
	struct proto_scratch	 sc;
	struct json_object	*obj;
	const char		*msg;
	size_t			 i;

	for (i = 0; i < NELEMS(cases); i++) {
		ck_assert_int_eq(scan(cases[i].line, &r, &sc), 0);
		ck_assert_int_eq(r.metrics, cases[i].metrics);
		ck_assert_int_eq(decode(cases[i].line, &obj, &r, &msg),
		    PROTO_OK);
		ck_assert_int_eq(r.metrics, cases[i].metrics);
		json_object_put(obj);
	}
	/* The json-c path judges what is not a boolean, null aside. */
	ck_assert_int_eq(scan("{\"op\":\"status\",\"metrics\":1}", &r, &sc),
	    -1);
	ck_assert_int_eq(decode_error("{\"op\":\"status\",\"metrics\":1}"),
	    PROTO_E_BAD_REQUEST);
	ck_assert_int_eq(decode("{\"op\":\"status\",\"metrics\":null}", &obj,
	    &r, &msg), PROTO_OK);
	ck_assert_int_eq(r.metrics, 0);
	json_object_put(obj);
}
END_TEST

static Suite *
protocol_suite(void)
{
	Suite	*s = suite_create("protocol");
	TCase	*tc = tcase_create("codec");

	tcase_add_test(tc, test_name_accepts_allowed_characters);
	tcase_add_test(tc, test_name_rejects_paths_and_bad_bytes);
	tcase_add_test(tc, test_target_is_a_name_or_a_path);
	tcase_add_test(tc, test_parse_line_rejects_garbage);
	tcase_add_test(tc, test_parse_line_limits_depth);
	tcase_add_test(tc, test_parse_line_forgets_a_cut_off_surrogate);
	tcase_add_test(tc, test_decode_acquire_defaults);
	tcase_add_test(tc, test_decode_acquire_all_fields);
	tcase_add_test(tc, test_decode_null_timeout_waits_forever);
	tcase_add_test(tc, test_decode_rejects_bad_fields);
	tcase_add_test(tc, test_decode_keeps_valid_id_on_error);
	tcase_add_test(tc, test_request_encode_round_trips);
	tcase_add_test(tc, test_error_reply_round_trips);
	tcase_add_test(tc, test_holder_round_trips);
	tcase_add_test(tc, test_waiter_has_no_token);
	tcase_add_test(tc, test_default_socket_follows_environment);
	tcase_add_test(tc, test_system_socket_moves_only_to_an_absolute_path);
	tcase_add_test(tc, test_uint_digits_in_decimal_with_zero_padding);
	tcase_add_test(tc, test_fast_path_decodes_hot_requests);
	tcase_add_test(tc, test_fast_path_declines_what_json_c_must_judge);
	tcase_add_test(tc, test_request_parse_errors_match_json_c);
	tcase_add_test(tc, test_fast_path_reads_numbers_as_strtod);
	tcase_add_test(tc, test_format_matches_json_c_for_plain_requests);
	tcase_add_test(tc, test_format_matches_json_c_for_acquire);
	tcase_add_test(tc, test_format_escapes_as_json_c);
	tcase_add_test(tc, test_format_doubles_read_back_exactly);
	tcase_add_test(tc, test_format_counts_what_does_not_fit);
	tcase_add_test(tc, test_utf8_valid_follows_rfc_3629);
	tcase_add_test(tc, test_requests_refuse_invalid_utf8);
	tcase_add_test(tc, test_requests_take_valid_utf8);
	tcase_add_test(tc, test_id_longer_than_cap_is_bad_request);
	tcase_add_test(tc, test_ids_come_back_exactly_or_are_refused);
	tcase_add_test(tc, test_list_paging_fields_decode);
	tcase_add_test(tc, test_notify_contended_decodes);
	tcase_add_test(tc, test_convert_decodes_on_both_paths_and_formats);
	tcase_add_test(tc, test_detect_deadlock_decodes);
	tcase_add_test(tc, test_format_writes_list_paging_fields);
	tcase_add_test(tc, test_format_writes_an_acquire_to_the_byte);
	tcase_add_test(tc, test_ok_line_is_json_c_to_the_byte);
	tcase_add_test(tc, test_grant_line_is_exact_and_decodes);
	tcase_add_test(tc, test_grant_line_writes_numbers_of_every_length);
	tcase_add_test(tc, test_fast_path_knows_every_op_and_field);
	tcase_add_test(tc, test_status_metrics_flag_decodes_on_both_paths);
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	return unit_run_suite(protocol_suite());
}
