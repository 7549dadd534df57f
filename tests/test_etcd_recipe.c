/*
 * Unit tests of the etcd store's pure half (daemon/etcd_recipe.c): the
 * gateway's encodings (base64 keys, int64 as strings, zero values left
 * out), key names, and the queue recipe (who waits behind whom, who holds).
 * The store against a real etcd is tests/test_cluster.py.
 */

#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "etcd.h"
#include "unit.h"

START_TEST(test_base64_round_trips_every_padding)
{
	const char	*texts[] = { "", "a", "ab", "abc", "/l/job/0a-1-x" };
	char		 enc[128], dec[128];
	size_t		 i;

	for (i = 0; i < sizeof texts / sizeof texts[0]; i++) {
		ck_assert_uint_gt(etcd_b64_encode(texts[i], strlen(texts[i]),
		    enc, sizeof enc) + (texts[i][0] == '\0'), 0);
		ck_assert_int_eq(etcd_b64_decode(enc, dec, sizeof dec),
		    (ssize_t)strlen(texts[i]));
		ck_assert_str_eq(dec, texts[i]);
	}
	etcd_b64_encode("/locks/a/x1", 11, enc, sizeof enc);
	ck_assert_str_eq(enc, "L2xvY2tzL2EveDE=");
}
END_TEST

START_TEST(test_base64_refuses_bad_text_and_small_buffers)
{
	char	 out[8];

	ck_assert_int_eq(etcd_b64_decode("abc", out, sizeof out), -1);
	ck_assert_int_eq(etcd_b64_decode("a=bc", out, sizeof out), -1);
	ck_assert_int_eq(etcd_b64_decode("ab!c", out, sizeof out), -1);
	ck_assert_int_eq(etcd_b64_decode("YWJjZGVmZ2hpams=", out, sizeof out),
	    -1);
	ck_assert_uint_eq(etcd_b64_encode("abcdefgh", 8, out, sizeof out), 0);
}
END_TEST

START_TEST(test_int64_from_strings_numbers_and_absence)
{
	struct json_object	*obj;

	obj = json_tokener_parse("{\"a\":\"9007199254740993\",\"b\":7,"
	    "\"c\":\"x\",\"d\":true}");
	ck_assert_int_eq(etcd_int64(obj, "a"), 9007199254740993LL);
	ck_assert_int_eq(etcd_int64(obj, "b"), 7);
	ck_assert_int_eq(etcd_int64(obj, "c"), 0);
	ck_assert_int_eq(etcd_int64(obj, "d"), 0);
	/* A zero is left out. */
	ck_assert_int_eq(etcd_int64(obj, "missing"), 0);
	ck_assert_int_eq(etcd_int64(NULL, "a"), 0);
	json_object_put(obj);
}
END_TEST

START_TEST(test_range_end_counts_the_last_byte_up)
{
	char	 end[16];

	ck_assert_int_eq(etcd_range_end("/locks/", end, sizeof end), 0);
	ck_assert_str_eq(end, "/locks0");
	ck_assert_int_eq(etcd_range_end("a\xff", end, sizeof end), 0);
	ck_assert_str_eq(end, "b");
	ck_assert_int_eq(etcd_range_end("", end, sizeof end), -1);
}
END_TEST

START_TEST(test_key_names_carry_lease_slot_and_mode)
{
	char		 a[ETCD_KEY_MAX], b[ETCD_KEY_MAX], name[64];
	enum proto_mode	 mode;

	ck_assert_int_eq(etcd_key_format(a, sizeof a, "/locks/", "job", 0x1234,
	    1, PROTO_EXCLUSIVE), 0);
	ck_assert_int_eq(etcd_key_format(b, sizeof b, "/locks/", "job", 0x1234,
	    2, PROTO_SHARED), 0);
	ck_assert_str_eq(a, "/locks/job/0000000000001234-1-x");
	ck_assert_str_ne(a, b);
	ck_assert_int_eq(etcd_key_parse(b, "/locks/", name, sizeof name,
	    &mode), 0);
	ck_assert_str_eq(name, "job");
	ck_assert_int_eq(mode, PROTO_SHARED);
	ck_assert_int_eq(etcd_key_parse("/other/job/1-1-x", "/locks/", name,
	    sizeof name, &mode), -1);
	ck_assert_int_eq(etcd_key_parse("/locks/job", "/locks/", name,
	    sizeof name, &mode), -1);
	ck_assert_int_eq(etcd_key_format(a, 10, "/locks/", "job", 1, 1,
	    PROTO_EXCLUSIVE), -1);
}
END_TEST

START_TEST(test_kv_decodes_the_gateways_shape)
{
	struct json_object	*obj;
	struct etcd_kv		*kv = malloc(sizeof *kv);

	/* {"pid":1} as the value; lease and revisions as strings. */
	obj = json_tokener_parse("{\"key\":\"L2xvY2tzL2EvMS0xLXM=\","
	    "\"create_revision\":\"42\",\"lease\":\"77\","
	    "\"value\":\"eyJwaWQiOjF9\"}");
	ck_assert_int_eq(etcd_kv_decode(obj, kv), 0);
	ck_assert_str_eq(kv->key, "/locks/a/1-1-s");
	ck_assert_int_eq(kv->create_revision, 42);
	ck_assert_int_eq(kv->lease, 77);
	ck_assert_int_eq(kv->mode, PROTO_SHARED);
	ck_assert_str_eq(kv->value, "{\"pid\":1}");
	json_object_put(obj);
	obj = json_tokener_parse("{\"create_revision\":\"42\"}");
	ck_assert_int_eq(etcd_kv_decode(obj, kv), -1);
	json_object_put(obj);
	free(kv);
}
END_TEST

/* A queue of keys with these modes, at revisions 10, 20, 30, ... */
static void
queue_read(struct etcd_queue *q, const char *modes, int64_t mine,
    enum proto_mode mode)
{
	struct etcd_kv	*kv = calloc(1, sizeof *kv);
	size_t		 i;

	etcd_queue_init(q, mine, mode);
	for (i = 0; modes[i] != '\0'; i++) {
		snprintf(kv->key, sizeof kv->key, "/l/n/k%zu-%c", i, modes[i]);
		kv->create_revision = (int64_t)(i + 1) * 10;
		kv->mode = modes[i] == 's' ? PROTO_SHARED : PROTO_EXCLUSIVE;
		etcd_queue_add(q, kv);
	}
	free(kv);
}

START_TEST(test_first_key_holds)
{
	struct etcd_queue	 q;

	queue_read(&q, "xx", 10, PROTO_EXCLUSIVE);
	ck_assert(etcd_queue_granted(&q));
	ck_assert_uint_eq(q.ahead, 0);
}
END_TEST

START_TEST(test_exclusive_watches_only_the_key_just_ahead)
{
	struct etcd_queue	 q;

	queue_read(&q, "xsxx", 40, PROTO_EXCLUSIVE);
	ck_assert(!etcd_queue_granted(&q));
	ck_assert_int_eq(q.blocker_revision, 30);
	ck_assert_str_eq(q.blocker, "/l/n/k2-x");
	ck_assert_uint_eq(q.ahead, 3);
}
END_TEST

START_TEST(test_shared_waits_only_behind_an_exclusive_key)
{
	struct etcd_queue	 q;

	queue_read(&q, "sss", 30, PROTO_SHARED);
	ck_assert(etcd_queue_granted(&q));
	queue_read(&q, "sxss", 40, PROTO_SHARED);
	ck_assert(!etcd_queue_granted(&q));
	ck_assert_int_eq(q.blocker_revision, 20);
	queue_read(&q, "ss", 20, PROTO_EXCLUSIVE);
	ck_assert_int_eq(q.blocker_revision, 10);
}
END_TEST

START_TEST(test_head_run_is_the_shared_keys_first)
{
	struct etcd_queue	 q;

	queue_read(&q, "ssxs", 0, PROTO_SHARED);
	ck_assert_uint_eq(q.nhead, 2);
	queue_read(&q, "xss", 0, PROTO_SHARED);
	ck_assert_uint_eq(q.nhead, 1);
	ck_assert_uint_eq(q.nkeys, 3);
}
END_TEST

static Suite *
etcd_recipe_suite(void)
{
	Suite	*s = suite_create("etcd_recipe");
	TCase	*tc = tcase_create("recipe");

	tcase_add_test(tc, test_base64_round_trips_every_padding);
	tcase_add_test(tc, test_base64_refuses_bad_text_and_small_buffers);
	tcase_add_test(tc, test_int64_from_strings_numbers_and_absence);
	tcase_add_test(tc, test_range_end_counts_the_last_byte_up);
	tcase_add_test(tc, test_key_names_carry_lease_slot_and_mode);
	tcase_add_test(tc, test_kv_decodes_the_gateways_shape);
	tcase_add_test(tc, test_first_key_holds);
	tcase_add_test(tc, test_exclusive_watches_only_the_key_just_ahead);
	tcase_add_test(tc, test_shared_waits_only_behind_an_exclusive_key);
	tcase_add_test(tc, test_head_run_is_the_shared_keys_first);
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	return unit_run_suite(etcd_recipe_suite());
}
