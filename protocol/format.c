/*
 * The wire lines written by hand, without json-c: a client's requests and
 * the daemon's hot ok and grant replies, as printf and a json tree were a
 * large share of a lock cycle's cost.  Each makes exactly the bytes json-c
 * would, as tests/test_protocol.c checks; the json-c request encoder they
 * are held to is here too, so a change to a message's shape has one place
 * to go.  No I/O: the caller writes the bytes.
 */

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "protocol.h"

#define OP_NAME(op, text)	[PROTO_OP_##op] = text,
static const char *const op_names[] = { PROTO_OPS(OP_NAME) };

/*
 * The modes' wire names, with their lengths, in arrays of one size: the
 * grant line copies the whole array, a copy of known size, which the
 * compiler inlines, and keeps len bytes of it: what comes next writes
 * over the rest.
 */
static const struct {
	char		 text[sizeof "exclusive"];
	size_t		 len;
} mode_words[] = {
	{ "exclusive", sizeof "exclusive" - 1 },
	{ "shared", sizeof "shared" - 1 },
};

#define MODE_WORD(mode)	(&mode_words[(mode) == PROTO_SHARED])

/* Return "exclusive" or "shared". */
const char *
proto_mode_name(enum proto_mode mode)
{
	return MODE_WORD(mode)->text;
}

/* Return the wire name of a scope. */
const char *
proto_scope_name(enum proto_scope scope)
{
	return scope == PROTO_SCOPE_CLUSTER ? "cluster" : "local";
}

/* Return the wire name of an op. */
static const char *
op_name(enum proto_op op)
{
	if ((size_t)op >= sizeof op_names / sizeof op_names[0])
		return "unknown";
	return op_names[op];
}

/* Build the wire form of a request, with an integer id (as a client sends). */
struct json_object *
proto_request_encode(const struct proto_request *req, int64_t id)
{
	struct json_object	*obj;

	obj = json_object_new_object();
	json_object_object_add(obj, "id", json_object_new_int64(id));
	json_object_object_add(obj, "op",
	    json_object_new_string(op_name(req->op)));
	if (req->name != NULL)
		json_object_object_add(obj, "name",
		    json_object_new_string(req->name));
	/* Only a cluster request says its scope: local is the default. */
	if (req->scope == PROTO_SCOPE_CLUSTER)
		json_object_object_add(obj, "scope",
		    json_object_new_string("cluster"));
	if (req->op == PROTO_OP_ACQUIRE || req->op == PROTO_OP_CONVERT) {
		json_object_object_add(obj, "mode",
		    json_object_new_string(proto_mode_name(req->mode)));
		if (req->timeout >= 0)
			json_object_object_add(obj, "timeout",
			    json_object_new_double(req->timeout));
	}
	switch (req->op) {
	case PROTO_OP_LIST:
		if (req->all)
			json_object_object_add(obj, "all",
			    json_object_new_boolean(1));
		if (req->limit > 0)
			json_object_object_add(obj, "limit",
			    json_object_new_int(req->limit));
		if (req->after != NULL)
			json_object_object_add(obj, "after",
			    json_object_new_string(req->after));
		break;
	case PROTO_OP_HELLO:
		json_object_object_add(obj, "client",
		    json_object_new_string(req->client ? req->client : ""));
		break;
	case PROTO_OP_ACQUIRE:
		json_object_object_add(obj, "notify_after",
		    json_object_new_double(req->notify_after));
		json_object_object_add(obj, "owner",
		    json_object_new_string(req->owner ? req->owner : ""));
		if (req->handoff)
			json_object_object_add(obj, "handoff",
			    json_object_new_boolean(1));
		if (req->notify_contended)
			json_object_object_add(obj, "notify_contended",
			    json_object_new_boolean(1));
		if (req->deadlock_group != NULL && *req->deadlock_group)
			json_object_object_add(obj, "deadlock_group",
			    json_object_new_string(req->deadlock_group));
		if (req->detect_deadlock)
			json_object_object_add(obj, "detect_deadlock",
			    json_object_new_boolean(1));
		break;
	case PROTO_OP_STATUS:
		if (req->metrics)
			json_object_object_add(obj, "metrics",
			    json_object_new_boolean(1));
		break;
	default:
		break;
	}
	return obj;
}

/* A line being formatted: bytes past its size are counted, not written. */
struct line_out {
	char	*buf;
	size_t	 size;
	size_t	 len;
};

static void
out_bytes(struct line_out *out, const char *bytes, size_t n)
{
	size_t	 room;

	if (out->len < out->size) {
		room = out->size - out->len;
		memcpy(out->buf + out->len, bytes, n < room ? n : room);
	}
	out->len += n;
}

static void
out_text(struct line_out *out, const char *text)
{
	out_bytes(out, text, strlen(text));
}

/* Escape one byte as json-c does: a short form where JSON has one. */
static void
out_escape(struct line_out *out, unsigned char c)
{
	static const char	 hex[] = "0123456789abcdef";
	static const char	 shortened[] = "\"\\\b\f\n\r\t";
	static const char	 short_forms[] = "\"\\bfnrt";
	const char		*found = strchr(shortened, c);
	char			 esc[6] = { '\\', 'u', '0', '0', hex[c >> 4],
				    hex[c & 0xf] };

	if (c != '\0' && found != NULL) {
		esc[1] = short_forms[found - shortened];
		out_bytes(out, esc, 2);
	} else
		out_bytes(out, esc, sizeof esc);
}

/* A JSON string, with quotes, backslashes and control bytes escaped. */
static void
out_string(struct line_out *out, const char *text)
{
	const char	*run = text;

	out_bytes(out, "\"", 1);
	for (; *text != '\0'; text++) {
		if ((unsigned char)*text >= 0x20 && *text != '"' &&
		    *text != '\\')
			continue;
		out_bytes(out, run, (size_t)(text - run));
		out_escape(out, (unsigned char)*text);
		run = text + 1;
	}
	out_bytes(out, run, (size_t)(text - run));
	out_bytes(out, "\"", 1);
}

/*
 * Write v in decimal, at least width digits (zero-padded, width at most
 * PROTO_UINT_DIGITS), so that it ends just before end; return its first
 * digit.  Hand-made because printf is a large share of a reply's cost.
 */
char *
proto_uint_digits(char *end, uint64_t v, int width)
{
	static const char	 pairs[] =
	    "00010203040506070809101112131415161718192021222324252627282930"
	    "31323334353637383940414243444546474849505152535455565758596061"
	    "62636465666768697071727374757677787980818283848586878889909192"
	    "93949596979899";
	char			*p = end;

	/* Two digits per division: tokens have sixteen of them. */
	while (v >= 100) {
		p -= 2;
		memcpy(p, pairs + v % 100 * 2, 2);
		v /= 100;
	}
	if (v >= 10) {
		p -= 2;
		memcpy(p, pairs + v * 2, 2);
	} else
		*--p = (char)('0' + v);
	while (end - p < width)
		*--p = '0';
	return p;
}

static void
out_int64(struct line_out *out, int64_t value)
{
	char		 digits[PROTO_UINT_DIGITS + 1], *end, *p;
	uint64_t	 magnitude;

	magnitude = value < 0 ? -(uint64_t)value : (uint64_t)value;
	end = digits + sizeof digits;
	p = proto_uint_digits(end, magnitude, 1);
	if (value < 0)
		*--p = '-';
	out_bytes(out, p, (size_t)(end - p));
}

/*
 * A double as json-c prints one: "%.17g", which reads back to the same
 * bits, with ".0" when that looks like an integer, and '.' in any locale.
 * Whole numbers of seconds, the common case, need no printf.
 */
static void
out_double(struct line_out *out, double value)
{
	char	 text[32], *comma;
	int	 len;

	if (!isfinite(value)) {
		/* Not JSON, as with json-c: the daemon refuses the line. */
		out_text(out, isnan(value) ? "NaN" :
		    value > 0 ? "Infinity" : "-Infinity");
		return;
	}
	if (!signbit(value) && value < 1e15 &&
	    value == (double)(int64_t)value) {
		out_int64(out, (int64_t)value);
		out_bytes(out, ".0", 2);
		return;
	}
	len = snprintf(text, sizeof text, "%.17g", value);
	if ((comma = strchr(text, ',')) != NULL)
		*comma = '.';
	out_bytes(out, text, (size_t)len);
	if (strpbrk(text, ".e") == NULL)
		out_bytes(out, ".0", 2);
}

/* Start a member after the first: ,"key": */
static void
out_key(struct line_out *out, const char *key)
{
	out_bytes(out, ",\"", 2);
	out_text(out, key);
	out_bytes(out, "\":", 2);
}

/* The mode and timeout an acquire and a convert both carry. */
static void
out_mode_timeout(struct line_out *out, const struct proto_request *req)
{
	out_key(out, "mode");
	out_string(out, proto_mode_name(req->mode));
	if (req->timeout >= 0) {
		out_key(out, "timeout");
		out_double(out, req->timeout);
	}
}

static void
out_acquire(struct line_out *out, const struct proto_request *req)
{
	out_mode_timeout(out, req);
	out_key(out, "notify_after");
	out_double(out, req->notify_after);
	out_key(out, "owner");
	out_string(out, req->owner ? req->owner : "");
	if (req->handoff)
		out_text(out, ",\"handoff\":true");
	if (req->notify_contended)
		out_text(out, ",\"notify_contended\":true");
	if (req->deadlock_group != NULL && *req->deadlock_group) {
		out_key(out, "deadlock_group");
		out_string(out, req->deadlock_group);
	}
	if (req->detect_deadlock)
		out_text(out, ",\"detect_deadlock\":true");
}

static void
out_list(struct line_out *out, const struct proto_request *req)
{
	if (req->all)
		out_text(out, ",\"all\":true");
	if (req->limit > 0) {
		out_key(out, "limit");
		out_int64(out, req->limit);
	}
	if (req->after != NULL) {
		out_key(out, "after");
		out_string(out, req->after);
	}
}

/*
 * Write a request with an integer id as one wire line, LF included: the
 * bytes proto_request_encode and proto_serialize make, without json-c.
 * Returns the line's length; it is all in buf only if that is <= size.
 */
size_t
proto_request_format(char *buf, size_t size, const struct proto_request *req,
    int64_t id)
{
	struct line_out	 out = { buf, size, 0 };

	out_text(&out, "{\"id\":");
	out_int64(&out, id);
	out_key(&out, "op");
	out_string(&out, op_name(req->op));
	if (req->name != NULL) {
		out_key(&out, "name");
		out_string(&out, req->name);
	}
	if (req->scope == PROTO_SCOPE_CLUSTER) {
		out_key(&out, "scope");
		out_string(&out, "cluster");
	}
	switch (req->op) {
	case PROTO_OP_LIST:
		out_list(&out, req);
		break;
	case PROTO_OP_HELLO:
		out_key(&out, "client");
		out_string(&out, req->client ? req->client : "");
		break;
	case PROTO_OP_ACQUIRE:
		out_acquire(&out, req);
		break;
	case PROTO_OP_CONVERT:
		out_mode_timeout(&out, req);
		break;
	case PROTO_OP_STATUS:
		if (req->metrics) {
			out_key(&out, "metrics");
			out_text(&out, "true");
		}
		break;
	default:
		break;
	}
	out_bytes(&out, "}\n", 2);
	return out.len;
}

/*
 * The daemon's reply lines.  The formatters check once that the line fits
 * and then copy each piece without a bound: they are on every lock cycle.
 */

/* A grant line's longest text but for its id, name and numbers. */
#define GRANT_TEXT_MAX	(sizeof "{\"id\":,\"ok\":true,\"name\":\"\"," \
	"\"mode\":\"exclusive\",\"token\":,\"waited\":.}\n" - 1)

_Static_assert(PROTO_REPLY_MAX >= GRANT_TEXT_MAX + PROTO_REPLY_ID_INLINE +
    PROTO_MAX_NAME + 3 * PROTO_UINT_DIGITS,
    "PROTO_REPLY_MAX must hold the longest grant line");
_Static_assert(PROTO_REPLY_ID_AT == sizeof "{\"id\":" - 1,
    "a long id goes on the wire right after {\"id\":");

static inline char *
put(char *p, const char *bytes, size_t n)
{
	memcpy(p, bytes, n);
	return p + n;
}

#define PUT_TEXT(p, text)	put((p), (text), sizeof (text) - 1)

/*
 * How many decimal digits v has: from its bit length, as 1233 / 4096 is
 * just under log10(2), the count is that or one more.
 */
static inline int
uint_ndigits(uint64_t v)
{
	static const uint64_t	 pow10[PROTO_UINT_DIGITS] = {
		1ULL, 10ULL, 100ULL, 1000ULL, 10000ULL, 100000ULL, 1000000ULL,
		10000000ULL, 100000000ULL, 1000000000ULL, 10000000000ULL,
		100000000000ULL, 1000000000000ULL, 10000000000000ULL,
		100000000000000ULL, 1000000000000000ULL,
		10000000000000000ULL, 100000000000000000ULL,
		1000000000000000000ULL, 10000000000000000000ULL
	};
	int			 n;

	n = (64 - __builtin_clzll(v | 1)) * 1233 >> 12;
	return n + ((v | 1) >= pow10[n]);
}

/* Append v in decimal, at least width digits (zero-padded), in place. */
static inline char *
put_uint(char *p, uint64_t v, int width)
{
	int	 n = uint_ndigits(v);

	if (n < width)
		n = width;
	proto_uint_digits(p + n, v, width);
	return p + n;
}

/* Start a reply line, {"id":<id>, without the id if it is long. */
static inline char *
put_reply_id(char *p, const char *id_text, size_t id_len)
{
	p = PUT_TEXT(p, "{\"id\":");
	if (id_len <= PROTO_REPLY_ID_INLINE)
		p = put(p, id_text, id_len);
	return p;
}

/*
 * Write a plain success reply, {"id":<id>,"ok":true} and LF, into buf of
 * size bytes, the id left out if long (see PROTO_REPLY_ID_INLINE).
 * Returns the length, or 0 if size is less than PROTO_REPLY_MAX.
 */
size_t
proto_format_ok(char *buf, size_t size, const char *id_text, size_t id_len)
{
	char	*p;

	if (size < PROTO_REPLY_MAX)
		return 0;
	p = put_reply_id(buf, id_text, id_len);
	p = PUT_TEXT(p, ",\"ok\":true}\n");
	return (size_t)(p - buf);
}

/*
 * Whether a lock name or path fits a grant line as it is: at most
 * PROTO_MAX_NAME bytes, none of which JSON would escape (a valid name
 * never has one; a path may).
 */
int
proto_name_plain(const char *name)
{
	const unsigned char	*p;

	for (p = (const unsigned char *)name; *p != '\0'; p++) {
		if (*p < 0x20 || *p == '"' || *p == '\\' || *p == 0x7f ||
		    p - (const unsigned char *)name >= PROTO_MAX_NAME)
			return 0;
	}
	return 1;
}

/*
 * Write a grant reply, with the lock's name, mode and token and the wait
 * in microseconds (as seconds with six decimals), into buf of size bytes,
 * the id left out if long.  The name is a valid lock name, or a path
 * that proto_name_plain passed, which needs no escaping.  Returns the length, or 0 if size is less than
 * PROTO_REPLY_MAX or the name longer than PROTO_MAX_NAME.
 */
size_t
proto_format_grant(char *buf, size_t size, const char *id_text,
    size_t id_len, const char *name, enum proto_mode mode, uint64_t token,
    uint64_t waited_us)
{
	size_t	 name_len = strlen(name);
	char	*p;

	if (size < PROTO_REPLY_MAX || name_len > PROTO_MAX_NAME)
		return 0;
	p = put_reply_id(buf, id_text, id_len);
	p = PUT_TEXT(p, ",\"ok\":true,\"name\":\"");
	p = put(p, name, name_len);
	p = PUT_TEXT(p, "\",\"mode\":\"");
	memcpy(p, MODE_WORD(mode)->text, sizeof MODE_WORD(mode)->text);
	p += MODE_WORD(mode)->len;
	p = PUT_TEXT(p, "\",\"token\":");
	p = put_uint(p, token, 1);
	p = PUT_TEXT(p, ",\"waited\":");
	p = put_uint(p, waited_us / 1000000, 1);
	p = PUT_TEXT(p, ".");
	p = put_uint(p, waited_us % 1000000, 6);
	p = PUT_TEXT(p, "}\n");
	return (size_t)(p - buf);
}
