/*
 * The pure half of the etcd store: the gateway's encodings (base64 keys,
 * int64 fields as strings, zero values left out) and the queue recipe
 * (which key a request waits behind, which keys hold).  No I/O and no
 * libevent, so that Check tests it alone (tests/test_etcd_recipe.c).
 */

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "etcd.h"

static const char b64_alphabet[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/* Base64 of len bytes into out, NUL-ended; its length, or 0 if no room. */
size_t
etcd_b64_encode(const void *data, size_t len, char *out, size_t out_size)
{
	const unsigned char	*in = data;
	size_t			 i, o = 0;
	uint32_t		 triple;

	if ((len + 2) / 3 * 4 + 1 > out_size)
		return 0;
	for (i = 0; i < len; i += 3) {
		triple = (uint32_t)in[i] << 16;
		if (i + 1 < len)
			triple |= (uint32_t)in[i + 1] << 8;
		if (i + 2 < len)
			triple |= in[i + 2];
		out[o++] = b64_alphabet[triple >> 18 & 63];
		out[o++] = b64_alphabet[triple >> 12 & 63];
		out[o++] = i + 1 < len ? b64_alphabet[triple >> 6 & 63] : '=';
		out[o++] = i + 2 < len ? b64_alphabet[triple & 63] : '=';
	}
	out[o] = '\0';
	return o;
}

/* The value of one base64 digit, or -1. */
static int
b64_digit(char c)
{
	const char	*p;

	if (c == '\0' || (p = strchr(b64_alphabet, c)) == NULL)
		return -1;
	return (int)(p - b64_alphabet);
}

/*
 * Decode base64 text into out, NUL-ended (keys and values are text here);
 * the decoded length, or -1 if the text is not base64 or does not fit.
 */
ssize_t
etcd_b64_decode(const char *text, char *out, size_t out_size)
{
	size_t		 len = strlen(text), i, o = 0;
	uint32_t	 quad;
	int		 d, j, pad;

	if (len % 4 != 0 || len / 4 * 3 + 1 > out_size)
		return -1;
	for (i = 0; i < len; i += 4) {
		quad = 0;
		pad = 0;
		for (j = 0; j < 4; j++) {
			if (text[i + j] == '=' && i + 4 == len && j >= 2) {
				pad++;
				quad <<= 6;
				continue;
			}
			if (pad > 0 || (d = b64_digit(text[i + j])) < 0)
				return -1;
			quad = quad << 6 | (uint32_t)d;
		}
		out[o++] = (char)(quad >> 16);
		if (pad < 2)
			out[o++] = (char)(quad >> 8 & 255);
		if (pad < 1)
			out[o++] = (char)(quad & 255);
	}
	out[o] = '\0';
	return (ssize_t)o;
}

/*
 * An int64 field of a gateway object: it comes as a string, or is left
 * out when zero; a JSON number is taken too.  0 when absent or bad.
 */
int64_t
etcd_int64(struct json_object *obj, const char *field)
{
	struct json_object	*value;
	const char		*text;
	char			*end;
	long long		 n;

	if (obj == NULL || !json_object_object_get_ex(obj, field, &value))
		return 0;
	if (json_object_is_type(value, json_type_int))
		return json_object_get_int64(value);
	if (!json_object_is_type(value, json_type_string))
		return 0;
	text = json_object_get_string(value);
	errno = 0;
	n = strtoll(text, &end, 10);
	if (errno != 0 || end == text || *end != '\0')
		return 0;
	return (int64_t)n;
}

/* An int64 as the gateway takes it: a decimal string. */
struct json_object *
etcd_int64_new(int64_t n)
{
	char	 text[32];

	snprintf(text, sizeof text, "%" PRId64, n);
	return json_object_new_string(text);
}

/* A key as the gateway takes it: base64, as a new json string. */
struct json_object *
etcd_key_new(const char *key)
{
	char	 text[ETCD_KEY_MAX * 2];

	if (etcd_b64_encode(key, strlen(key), text, sizeof text) == 0)
		return NULL;
	return json_object_new_string(text);
}

/*
 * The end of the range of every key under prefix: prefix with its last
 * byte counted up (etcd's "prefix end"); -1 if it does not fit.
 */
int
etcd_range_end(const char *prefix, char *out, size_t out_size)
{
	size_t	 len = strlen(prefix);

	while (len > 0 && (unsigned char)prefix[len - 1] == 0xff)
		len--;
	if (len == 0 || len + 1 > out_size)
		return -1;
	memcpy(out, prefix, len);
	out[len - 1] = (char)((unsigned char)out[len - 1] + 1);
	out[len] = '\0';
	return 0;
}

/*
 * The key of one take: under "<prefix><name>/", unique per lease and per
 * take on it, ending in its mode ("-x" or "-s") so that a reader sees it
 * without the value.  -1 if it does not fit.
 */
int
etcd_key_format(char *out, size_t out_size, const char *prefix,
    const char *name, int64_t lease, uint64_t seq, enum proto_mode mode)
{
	int	 n;

	n = snprintf(out, out_size, "%s%s/%016" PRIx64 "-%" PRIx64 "-%c",
	    prefix, name, (uint64_t)lease, seq,
	    mode == PROTO_SHARED ? 's' : 'x');
	return n < 0 || (size_t)n >= out_size ? -1 : 0;
}

/*
 * Split a take's key into its lock name (under prefix) and mode; -1 if
 * the key is not one of ours.
 */
int
etcd_key_parse(const char *key, const char *prefix, char *name,
    size_t name_size, enum proto_mode *ret_mode)
{
	size_t		 plen = strlen(prefix), klen = strlen(key);
	const char	*slash;

	if (klen < plen + 4 || strncmp(key, prefix, plen) != 0 ||
	    key[klen - 2] != '-' || (key[klen - 1] != 'x' &&
	    key[klen - 1] != 's'))
		return -1;
	if ((slash = strrchr(key + plen, '/')) == NULL || slash == key + plen ||
	    (size_t)(slash - key - plen) >= name_size)
		return -1;
	memcpy(name, key + plen, (size_t)(slash - key - plen));
	name[slash - key - plen] = '\0';
	*ret_mode = key[klen - 1] == 's' ? PROTO_SHARED : PROTO_EXCLUSIVE;
	return 0;
}

/*
 * Decode one kv of a range reply (key base64, revisions as strings) into
 * kv; -1 if it is not a kv of the gateway's shape.  The value, base64
 * too, is decoded as text; a value that is not is left empty.
 */
int
etcd_kv_decode(struct json_object *obj, struct etcd_kv *kv)
{
	struct json_object	*field;

	memset(kv, 0, sizeof *kv);
	if (!json_object_is_type(obj, json_type_object) ||
	    !json_object_object_get_ex(obj, "key", &field) ||
	    !json_object_is_type(field, json_type_string) ||
	    etcd_b64_decode(json_object_get_string(field), kv->key,
	    sizeof kv->key) <= 0)
		return -1;
	kv->create_revision = etcd_int64(obj, "create_revision");
	kv->lease = etcd_int64(obj, "lease");
	kv->mode = kv->key[strlen(kv->key) - 1] == 's' ? PROTO_SHARED :
	    PROTO_EXCLUSIVE;
	if (json_object_object_get_ex(obj, "value", &field) &&
	    json_object_is_type(field, json_type_string) &&
	    etcd_b64_decode(json_object_get_string(field), kv->value,
	    sizeof kv->value) < 0)
		kv->value[0] = '\0';
	return 0;
}

/* Start reading a queue, in create order, for the take created at mine. */
void
etcd_queue_init(struct etcd_queue *q, int64_t mine, enum proto_mode mode)
{
	memset(q, 0, sizeof *q);
	q->mine = mine;
	q->mode = mode;
}

/*
 * Read the next key of the queue (in create_revision order).  As etcd's
 * RWMutex: an exclusive take waits behind the last key before it, a
 * shared one behind the last exclusive key before it.  The head run (the
 * keys that hold now) is the first key, with the shared keys after a
 * shared first one.
 */
void
etcd_queue_add(struct etcd_queue *q, const struct etcd_kv *kv)
{
	if (q->nkeys == 0 || (q->head_shared && kv->mode == PROTO_SHARED &&
	    q->nhead == q->nkeys)) {
		q->head_shared = kv->mode == PROTO_SHARED;
		q->nhead++;
	}
	q->nkeys++;
	if (q->mine == 0 || kv->create_revision >= q->mine)
		return;
	q->ahead++;
	if (q->mode == PROTO_EXCLUSIVE || kv->mode == PROTO_EXCLUSIVE) {
		memcpy(q->blocker, kv->key, sizeof q->blocker);
		q->blocker_revision = kv->create_revision;
	}
}

/* Whether the take read by q holds now: nothing it must wait behind. */
int
etcd_queue_granted(const struct etcd_queue *q)
{
	return q->blocker_revision == 0;
}
