/*
 * The request fast path: a strict scanner for the common request shape, a
 * flat object whose values are plain strings (printable ASCII or valid
 * UTF-8, no escapes), numbers, true, false or null, with spaces at most
 * between tokens.  It accepts only what it can decode exactly as the
 * json-c path would, and declines anything else (duplicate known keys,
 * odd ids, any error), so the json-c path stays the one authority on what
 * is refused.  On the common shape it reads each byte once, compares
 * keys in place, and reads numbers without strtod.
 */

#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "protocol.h"

#define SCAN_MAX_INT	15	/* longer integers are left to json-c */
#define SCAN_MAX_NUMBER	63	/* and longer numbers of any kind */
#define SCAN_MAX_EXACT	(1ULL << 53)	/* integers a double holds exactly */

enum scan_type {
	SCAN_STRING,
	SCAN_INT,
	SCAN_NUMBER,
	SCAN_TRUE,
	SCAN_FALSE,
	SCAN_NULL
};

/* The keys the fast path decodes; any other is KEY_OTHER, and skipped. */
#define KEY_ENUM(field, text)	KEY_##field,
enum scan_key {
	KEY_OTHER,
	PROTO_FIELDS(KEY_ENUM)
	KEY_COUNT
};

/* A word of the protocol, with its length. */
struct scan_word {
	const char	*text;
	size_t		 len;
};

#define WORD(text)	{ text, sizeof text - 1 }

#define KEY_WORD(field, text)	[KEY_##field] = WORD(text),
static const struct scan_word scan_keys[KEY_COUNT] = {
	PROTO_FIELDS(KEY_WORD)
};

_Static_assert(KEY_COUNT <= 32, "struct scan has a bit per key in seen");

/*
 * The known keys each first byte may start, so only they are compared.
 * A key missing here is skipped, unread: test_protocol.c checks that
 * every one of PROTO_FIELDS is here.
 */
#define KEYS_PER_FIRST	3	/* the most known keys one byte starts */

static const unsigned char keys_by_first[128][KEYS_PER_FIRST] = {
	['a'] = { KEY_ALL, KEY_AFTER },
	['c'] = { KEY_CLIENT },
	['d'] = { KEY_DETECT_DEADLOCK, KEY_DEADLOCK_GROUP },
	['h'] = { KEY_HANDOFF },
	['i'] = { KEY_ID },
	['l'] = { KEY_LIMIT },
	['m'] = { KEY_MODE, KEY_METRICS },
	['n'] = { KEY_NAME, KEY_NOTIFY_AFTER, KEY_NOTIFY_CONTENDED },
	['o'] = { KEY_OP, KEY_OWNER },
	['s'] = { KEY_SCOPE },
	['t'] = { KEY_TIMEOUT },
};

/*
 * The ops by the first byte of their names, which all differ.  An op
 * missing here takes the json-c path: test_protocol.c checks that every
 * one of PROTO_OPS is here, so a new op whose first byte is taken fails
 * it until this table can tell the two apart.
 */
static const struct {
	struct scan_word	 name;
	enum proto_op		 op;
} ops_by_first[128] = {
	['a'] = { WORD("acquire"), PROTO_OP_ACQUIRE },
	['c'] = { WORD("convert"), PROTO_OP_CONVERT },
	['h'] = { WORD("hello"), PROTO_OP_HELLO },
	['l'] = { WORD("list"), PROTO_OP_LIST },
	['p'] = { WORD("ping"), PROTO_OP_PING },
	['r'] = { WORD("release"), PROTO_OP_RELEASE },
	['s'] = { WORD("status"), PROTO_OP_STATUS },
};

static const struct scan_word scan_scopes[] = {
	[PROTO_SCOPE_LOCAL] = WORD("local"),
	[PROTO_SCOPE_CLUSTER] = WORD("cluster"),
};

static const struct scan_word scan_modes[] = {
	[PROTO_EXCLUSIVE] = WORD("exclusive"),
	[PROTO_SHARED] = WORD("shared"),
};

/*
 * The bytes a fast-path string may hold as they are: printable ASCII but
 * " and \.  Bytes past ASCII must be valid UTF-8.
 */
static const unsigned char string_plain[256] = {
	[' ' ... '!'] = 1, ['#' ... '['] = 1, [']' ... '~'] = 1
};

/* The powers of ten that a double holds exactly. */
static const double exact_pow10[] = {
	1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11,
	1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22
};

#define MAX_EXACT_POW10 \
	((int)(sizeof exact_pow10 / sizeof exact_pow10[0]) - 1)

/* One scanned value: its raw text (strings without their quotes). */
struct scan_value {
	enum scan_type	 type;
	const char	*text;
	size_t		 len;
	int64_t		 integer;	/* SCAN_INT */
	double		 number;	/* a number, as json-c reads it */
};

struct scan {
	const char		*end;
	unsigned int		 seen;		/* a bit per enum scan_key */
	struct scan_value	 fields[KEY_COUNT];	/* [KEY_OTHER]: unused */
	struct proto_scratch	*scratch;
};

/* The digits of a number as read: value = mantissa * 10^exponent. */
struct scan_decimal {
	uint64_t	 mantissa;
	uint64_t	 exponent;	/* its magnitude */
	int		 exponent_negative;
	size_t		 fraction_digits;
	int		 overflow;	/* a digit did not fit: use strtod */
};

/*
 * The scanners below take the position p of what they read and the end of
 * the line, and return the position after it, or NULL to decline.
 */

static const char *
skip_space(const char *p, const char *end)
{
	while (p < end && *p == ' ')
		p++;
	return p;
}

/* Whether the len bytes at text are word. */
static int
word_is(const struct scan_word *word, const char *text, size_t len)
{
	return len == word->len && memcmp(text, word->text, len) == 0;
}

/* Whether a value is the string word. */
static int
value_is(const struct scan_value *v, const struct scan_word *word)
{
	return v->type == SCAN_STRING && word_is(word, v->text, v->len);
}

/*
 * The rest of a string from its first byte past ASCII at p: runs of valid
 * UTF-8 and of plain ASCII, up to the first other byte; NULL if a run is
 * not UTF-8.  Apart, so that the ASCII loop of scan_string stays tight.
 */
static const char * __attribute__((noinline))
scan_utf8_rest(const char *p, const char *end)
{
	const char	*run;

	while (p < end && (unsigned char)*p >= 0x80) {
		run = p;
		while (p < end && (unsigned char)*p >= 0x80)
			p++;
		if (!proto_utf8_valid(run, (size_t)(p - run)))
			return NULL;
		while (p < end && string_plain[(unsigned char)*p])
			p++;
	}
	return p;
}

/* A string of printable text without escapes; p is past the quote. */
static inline const char *
scan_string(const char *p, const char *end, struct scan_value *v)
{
	v->type = SCAN_STRING;
	v->text = p;
	while (p < end && string_plain[(unsigned char)*p])
		p++;
	if (p < end && (unsigned char)*p >= 0x80 &&
	    (p = scan_utf8_rest(p, end)) == NULL)
		return NULL;
	if (p == end || *p != '"')
		return NULL;
	v->len = (size_t)(p - v->text);
	return p + 1;
}

/* Read a run of digits into *value, noting when one does not fit. */
static const char *
scan_digits(const char *p, const char *end, uint64_t *value, int *overflow)
{
	uint64_t	 sum = *value;
	unsigned int	 digit;

	for (; p < end && (digit = *p - '0') <= 9; p++) {
		if (sum > (UINT64_MAX - 9) / 10)
			*overflow = 1;
		else
			sum = sum * 10 + digit;
	}
	*value = sum;
	return p;
}

/* A number in RFC 8259's grammar; SCAN_INT when it has no . or exponent. */
static const char *
scan_number_text(const char *p, const char *end, struct scan_decimal *d,
    enum scan_type *ret_type)
{
	const char	*digits;

	*ret_type = SCAN_INT;
	if (p < end && *p == '-')
		p++;
	digits = p;
	p = scan_digits(p, end, &d->mantissa, &d->overflow);
	if (p == digits || (*digits == '0' && p - digits > 1))
		return NULL;
	if (p < end && *p == '.') {
		digits = ++p;
		p = scan_digits(p, end, &d->mantissa, &d->overflow);
		if (p == digits)
			return NULL;
		d->fraction_digits = (size_t)(p - digits);
		*ret_type = SCAN_NUMBER;
	}
	if (p < end && (*p == 'e' || *p == 'E')) {
		p++;
		if (p < end && (*p == '+' || *p == '-'))
			d->exponent_negative = *p++ == '-';
		digits = p;
		p = scan_digits(p, end, &d->exponent, &d->overflow);
		if (p == digits)
			return NULL;
		*ret_type = SCAN_NUMBER;
	}
	return p;
}

/*
 * The double strtod makes of a decimal, computed without it when both the
 * mantissa and the power of ten are exact doubles: then one IEEE multiply
 * or divide rounds correctly, so the result is strtod's to the bit.
 * Returns -1 when it cannot tell.
 */
static int
decimal_exact(const struct scan_decimal *d, double *ret_value)
{
	int	 power;

	/* Also keeps the exponent well inside an int. */
	if (FLT_EVAL_METHOD != 0 || d->overflow ||
	    d->mantissa > SCAN_MAX_EXACT || d->exponent > SCAN_MAX_NUMBER)
		return -1;
	power = (d->exponent_negative ? -(int)d->exponent : (int)d->exponent) -
	    (int)d->fraction_digits;
	if (power < -MAX_EXACT_POW10 || power > MAX_EXACT_POW10)
		return -1;
	if (power < 0)
		*ret_value = (double)d->mantissa / exact_pow10[-power];
	else
		*ret_value = (double)d->mantissa * exact_pow10[power];
	return 0;
}

/* The value of a number as json-c reads it (strtod, or its int64). */
static int
scan_number_value(struct scan_value *v, const struct scan_decimal *d)
{
	char	 text[SCAN_MAX_NUMBER + 1];
	int	 negative = v->text[0] == '-';

	if (v->type == SCAN_INT) {
		/* Short, so the int64 range rules of json-c cannot apply. */
		if (v->len > SCAN_MAX_INT)
			return -1;
		v->integer = negative ? -(int64_t)d->mantissa :
		    (int64_t)d->mantissa;
		v->number = (double)v->integer;
		return 0;
	}
	if (decimal_exact(d, &v->number) == 0) {
		if (negative)
			v->number = -v->number;
		return 0;
	}
	memcpy(text, v->text, v->len);
	text[v->len] = '\0';
	v->number = strtod(text, NULL);
	/* json-c refuses what overflows to infinity, anywhere in a request. */
	return isfinite(v->number) ? 0 : -1;
}

static const char *
scan_number(const char *p, const char *end, struct scan_value *v)
{
	struct scan_decimal	 d;

	memset(&d, 0, sizeof d);
	v->text = p;
	if ((p = scan_number_text(p, end, &d, &v->type)) == NULL)
		return NULL;
	v->len = (size_t)(p - v->text);
	if (v->len > SCAN_MAX_NUMBER || scan_number_value(v, &d) == -1)
		return NULL;
	return p;
}

static const char *
scan_literal(const char *p, const char *end, const char *word,
    enum scan_type type, struct scan_value *v)
{
	size_t	 len = strlen(word);

	if ((size_t)(end - p) < len || memcmp(p, word, len) != 0)
		return NULL;
	v->type = type;
	v->text = p;
	v->len = len;
	return p + len;
}

static const char *
scan_value(const char *p, const char *end, struct scan_value *v)
{
	if (p == end)
		return NULL;
	switch (*p) {
	case '"':
		return scan_string(p + 1, end, v);
	case 't':
		return scan_literal(p, end, "true", SCAN_TRUE, v);
	case 'f':
		return scan_literal(p, end, "false", SCAN_FALSE, v);
	case 'n':
		return scan_literal(p, end, "null", SCAN_NULL, v);
	default:
		return scan_number(p, end, v);
	}
}

/* The end of key k if it stands at p, with its closing quote, else NULL. */
static const char *
key_at(const char *p, const char *end, enum scan_key k)
{
	const struct scan_word	*key = &scan_keys[k];

	if ((size_t)(end - p) <= key->len || p[key->len] != '"' ||
	    !word_is(key, p, key->len))
		return NULL;
	return p + key->len + 1;
}

/*
 * A key, p just past its opening quote.  The known keys its first byte
 * may start are compared in place; any other key is scanned as a string.
 */
static const char *
scan_key(const char *p, const char *end, enum scan_key *ret_key)
{
	const unsigned char	*candidates;
	struct scan_value	 other;
	const char		*q;
	size_t			 i;

	if (p < end && (unsigned char)*p < 128) {
		candidates = keys_by_first[(unsigned char)*p];
		for (i = 0; i < KEYS_PER_FIRST && candidates[i] != KEY_OTHER;
		    i++) {
			if ((q = key_at(p, end, candidates[i])) != NULL) {
				*ret_key = candidates[i];
				return q;
			}
		}
	}
	*ret_key = KEY_OTHER;
	return scan_string(p, end, &other);
}

/* One "key":value member, keeping the value if the key is known. */
static const char *
scan_member(struct scan *s, const char *p)
{
	enum scan_key		 k;

	if (p == s->end || *p++ != '"' ||
	    (p = scan_key(p, s->end, &k)) == NULL)
		return NULL;
	p = skip_space(p, s->end);
	if (p == s->end || *p++ != ':')
		return NULL;
	p = skip_space(p, s->end);
	if (k != KEY_OTHER) {
		/* Last wins in json-c; leave duplicates to it. */
		if (s->seen & 1U << k)
			return NULL;
		s->seen |= 1U << k;
	}
	return scan_value(p, s->end, &s->fields[k]);
}

/* The whole line as one flat object, as json-c's framing allows. */
static int
scan_object(struct scan *s, const char *p)
{
	if (p == s->end || *p++ != '{')
		return -1;
	for (;;) {
		p = skip_space(p, s->end);
		if ((p = scan_member(s, p)) == NULL)
			return -1;
		p = skip_space(p, s->end);
		if (p == s->end)
			return -1;
		if (*p == '}')
			break;
		if (*p++ != ',')
			return -1;
	}
	p++;
	return proto_blank(p, (size_t)(s->end - p)) ? 0 : -1;
}

/* A known field's value, or NULL when absent or null: the same to decode. */
static const struct scan_value *
scan_field(const struct scan *s, enum scan_key key)
{
	if (!(s->seen & 1U << key) || s->fields[key].type == SCAN_NULL)
		return NULL;
	return &s->fields[key];
}

/* Copy a scanned string into the scratch space, NUL-terminated. */
static const char *
scan_copy(struct scan *s, const struct scan_value *v)
{
	struct proto_scratch	*sc = s->scratch;
	char			*copy;

	if (v->len + 1 > sizeof sc->buf - sc->used)
		return NULL;
	copy = sc->buf + sc->used;
	memcpy(copy, v->text, v->len);
	copy[v->len] = '\0';
	sc->used += v->len + 1;
	return copy;
}

/* An optional label: absent or null is "", else a short string. */
static int
scan_label(struct scan *s, enum scan_key key, const char **ret_label)
{
	const struct scan_value	*v;

	if ((v = scan_field(s, key)) == NULL) {
		*ret_label = "";
		return 0;
	}
	if (v->type != SCAN_STRING || v->len > PROTO_MAX_LABEL)
		return -1;
	return (*ret_label = scan_copy(s, v)) == NULL ? -1 : 0;
}

/* A valid name or path; absent or null is NULL, which only list accepts. */
static int
scan_name(struct scan *s, int required, const char **ret_name)
{
	const struct scan_value	*v;

	if ((v = scan_field(s, KEY_NAME)) == NULL) {
		*ret_name = NULL;
		return required ? -1 : 0;
	}
	/* A path (with a '/') too: its cycle is as hot as a name's. */
	if (v->type != SCAN_STRING || !proto_target_valid(v->text, v->len))
		return -1;
	return (*ret_name = scan_copy(s, v)) == NULL ? -1 : 0;
}

/* Seconds from 0 to PROTO_MAX_SECONDS; absent or null is dflt. */
static int
scan_seconds(struct scan *s, enum scan_key key, double dflt,
    double *ret_seconds)
{
	const struct scan_value	*v;

	if ((v = scan_field(s, key)) == NULL) {
		*ret_seconds = dflt;
		return 0;
	}
	if ((v->type != SCAN_INT && v->type != SCAN_NUMBER) ||
	    v->number < 0 || v->number > PROTO_MAX_SECONDS)
		return -1;
	*ret_seconds = v->number;
	return 0;
}

/* Which of n words a field holds: its index, n when absent, -1 if none. */
static int
scan_choice(const struct scan *s, enum scan_key key,
    const struct scan_word *words, size_t n)
{
	const struct scan_value	*v;
	size_t			 i;

	if ((v = scan_field(s, key)) == NULL)
		return (int)n;
	for (i = 0; i < n; i++) {
		if (value_is(v, &words[i]))
			return (int)i;
	}
	return -1;
}

static int
scan_mode(struct scan *s, enum proto_mode *ret_mode)
{
	int	 i;

	i = scan_choice(s, KEY_MODE, scan_modes, 2);
	if (i < 0)
		return -1;
	if (i < 2)
		*ret_mode = i;
	return 0;
}

/* The scope of a name's request; a path's cluster scope is json-c's. */
static int
scan_scope(struct scan *s, struct proto_request *req)
{
	int	 i;

	if ((i = scan_choice(s, KEY_SCOPE, scan_scopes, 2)) < 0)
		return -1;
	if (i < 2)
		req->scope = i;
	return req->scope == PROTO_SCOPE_CLUSTER && req->name != NULL &&
	    proto_is_path(req->name) ? -1 : 0;
}

/* An optional boolean flag of key: true or false (a bad one is json-c's). */
static int
scan_flag(struct scan *s, enum scan_key key, int *ret_flag)
{
	const struct scan_value	*v;

	if ((v = scan_field(s, key)) == NULL)
		return 0;
	if (v->type != SCAN_TRUE && v->type != SCAN_FALSE)
		return -1;
	*ret_flag = v->type == SCAN_TRUE;
	return 0;
}

static int
scan_acquire(struct scan *s, struct proto_request *req)
{
	if (scan_name(s, 1, &req->name) == -1 || scan_scope(s, req) == -1 ||
	    scan_flag(s, KEY_NOTIFY_CONTENDED, &req->notify_contended) == -1 ||
	    scan_flag(s, KEY_DETECT_DEADLOCK, &req->detect_deadlock) == -1 ||
	    scan_mode(s, &req->mode) == -1 ||
	    scan_seconds(s, KEY_TIMEOUT, -1, &req->timeout) == -1 ||
	    scan_seconds(s, KEY_NOTIFY_AFTER, 0, &req->notify_after) == -1 ||
	    scan_field(s, KEY_HANDOFF) != NULL ||
	    scan_label(s, KEY_DEADLOCK_GROUP, &req->deadlock_group) == -1)
		return -1;	/* a handoff is for paths, which json-c reads */
	return scan_label(s, KEY_OWNER, &req->owner);
}

/* A convert: a name, the mode it goes to (required), a timeout. */
static int
scan_convert(struct scan *s, struct proto_request *req)
{
	if (scan_field(s, KEY_MODE) == NULL)
		return -1;	/* json-c says what is missing */
	if (scan_name(s, 1, &req->name) == -1 || scan_scope(s, req) == -1 ||
	    scan_mode(s, &req->mode) == -1)
		return -1;
	return scan_seconds(s, KEY_TIMEOUT, -1, &req->timeout);
}

/* Which op this is: its first byte leaves one to compare. */
static int
scan_op(struct scan *s, struct proto_request *req)
{
	const struct scan_value	*v;
	unsigned char		 first;

	if ((v = scan_field(s, KEY_OP)) == NULL || v->type != SCAN_STRING ||
	    v->len == 0 || (first = (unsigned char)v->text[0]) >= 128 ||
	    !value_is(v, &ops_by_first[first].name))
		return -1;
	req->op = ops_by_first[first].op;
	return 0;
}

/* List's paging fields: a limit of 1 to PROTO_MAX_LIST, a name after. */
static int
scan_paging(struct scan *s, struct proto_request *req)
{
	const struct scan_value	*v;

	if ((v = scan_field(s, KEY_LIMIT)) != NULL) {
		if (v->type != SCAN_INT || v->integer < 1 ||
		    v->integer > PROTO_MAX_LIST)
			return -1;
		req->limit = (int)v->integer;
	}
	if ((v = scan_field(s, KEY_AFTER)) != NULL) {
		if (v->type != SCAN_STRING ||
		    !proto_name_valid(v->text, v->len))
			return -1;
		if ((req->after = scan_copy(s, v)) == NULL)
			return -1;
	}
	return 0;
}

static int
scan_list(struct scan *s, struct proto_request *req)
{
	const struct scan_value	*all;

	if ((all = scan_field(s, KEY_ALL)) != NULL) {
		if (all->type != SCAN_TRUE && all->type != SCAN_FALSE)
			return -1;
		req->all = all->type == SCAN_TRUE;
	}
	if (scan_paging(s, req) == -1 || scan_name(s, 0, &req->name) == -1)
		return -1;
	return scan_scope(s, req);
}

/* Status's metrics flag: a boolean, or null. */
static int
scan_status(struct scan *s, struct proto_request *req)
{
	const struct scan_value	*v;

	if ((v = scan_field(s, KEY_METRICS)) == NULL)
		return 0;
	if (v->type != SCAN_TRUE && v->type != SCAN_FALSE)
		return -1;
	req->metrics = v->type == SCAN_TRUE;
	return 0;
}

static int
scan_fields(struct scan *s, struct proto_request *req)
{
	if (scan_op(s, req) == -1)
		return -1;
	switch (req->op) {
	case PROTO_OP_HELLO:
		return scan_label(s, KEY_CLIENT, &req->client);
	case PROTO_OP_ACQUIRE:
		return scan_acquire(s, req);
	case PROTO_OP_RELEASE:
		if (scan_name(s, 1, &req->name) == -1)
			return -1;
		return scan_scope(s, req);
	case PROTO_OP_LIST:
		return scan_list(s, req);
	case PROTO_OP_STATUS:
		return scan_status(s, req);
	case PROTO_OP_PING:
		return 0;
	case PROTO_OP_CONVERT:
		return scan_convert(s, req);
	}
	return -1;
}

/*
 * Take the id's wire text, when it is exactly what json-c would print
 * back: short integers other than -0, plain strings of at most
 * PROTO_MAX_ID bytes with their quotes, true, false and null.  Other ids
 * are left to json-c, which judges them.  No object is made: replies that
 * need one rebuild it from the text (proto_request_id).
 */
static int
scan_id(struct scan *s, struct proto_request *req)
{
	const struct scan_value	*v;

	if ((v = scan_field(s, KEY_ID)) == NULL)
		return 0;
	switch (v->type) {
	case SCAN_STRING:
		if (v->len + 2 > PROTO_MAX_ID)
			return -1;
		req->id_text = v->text - 1;
		req->id_len = v->len + 2;
		return 0;
	case SCAN_INT:
		if (v->len == 2 && v->text[0] == '-' && v->text[1] == '0')
			return -1;
		break;
	case SCAN_TRUE:
	case SCAN_FALSE:
		break;
	default:
		return -1;
	}
	req->id_text = v->text;
	req->id_len = v->len;
	return 0;
}

/*
 * Decode a line on the fast path.  Returns 0 with req filled (its id as
 * text only, req->id NULL, and its strings in scratch), or -1 when the
 * line needs the json-c path.  Nothing is allocated either way.
 */
int
proto_request_scan(const char *line, size_t len,
    struct proto_scratch *scratch, struct proto_request *req)
{
	struct scan	 s;

	s.end = line + len;
	s.seen = 0;
	s.scratch = scratch;
	scratch->used = 0;
	proto_request_reset(req);
	if (scan_object(&s, line) == -1 || scan_fields(&s, req) == -1)
		return -1;
	return scan_id(&s, req);
}

/*
 * The reply fast path, for liblocks: recognise the daemon's plain success
 * reply to request id without json-c, {"id":ID,"ok":true} or a grant
 * {"id":ID,"ok":true,...,"token":T,...}.  Returns 1 and the token (0 if
 * none) when the line is exactly such a reply; 0 sends the line through
 * the full parser.
 */
int
proto_success_scan(const char *line, size_t len, int64_t id,
    int64_t *ret_token)
{
	static const char	 open[] = "{\"id\":", ok[] = ",\"ok\":true";
	char			 digits[PROTO_UINT_DIGITS];
	char			*digits_end = digits + sizeof digits, *first;
	const char		*p, *end = line + len;
	size_t			 ndigits, n;
	int64_t			 token = 0;

	/* Our ids are positive: the head is {"id":<digits>,"ok":true. */
	first = proto_uint_digits(digits_end, (uint64_t)id, 1);
	ndigits = (size_t)(digits_end - first);
	n = sizeof open - 1 + ndigits + sizeof ok - 1;
	if (id <= 0 || len < n + 1 ||
	    memcmp(line, open, sizeof open - 1) != 0 ||
	    memcmp(line + sizeof open - 1, first, ndigits) != 0 ||
	    memcmp(line + sizeof open - 1 + ndigits, ok, sizeof ok - 1) != 0 ||
	    line[len - 1] != '}' || memchr(line, '\\', len) != NULL)
		return 0;
	if (n + 1 == len) {
		*ret_token = 0;
		return 1;
	}
	p = memmem(line, len, ",\"token\":", 9);
	if (p == NULL || p + 9 >= end || p[9] < '1' || p[9] > '9')
		return 0;
	for (p += 9; p < end && *p >= '0' && *p <= '9'; p++) {
		if (token > (INT64_MAX - 9) / 10)
			return 0;
		token = token * 10 + (*p - '0');
	}
	if (p >= end || (*p != ',' && *p != '}'))
		return 0;
	*ret_token = token;
	return 1;
}
